"""Benchmark: import a 5,000-row file, against a plain insert_many measured in the same run.

    python -m scripts.bench_import [--rows 5000]

Uses MONGODB_URI / REDIS_URL when set, else starts the embedded stores (as the
tests do), on a scratch database that is dropped afterwards. Prints absolute
seconds and ratios to the baseline: inserting one document per row with one
insert_many, the least any import of those rows must do.
"""

import argparse
import asyncio
import contextlib
import csv
import io
import os
import time
import uuid

from server.embedded import start_mongo, start_redis
from server.stores import connect_mongo, connect_redis
from scripts.import_residents import prepared_importer

RELATIONS = ("owner", "family", "tenant")


def sample_file(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["楼栋", "单元", "房号", "面积", "姓名", "手机", "关系", "租期截止"])
    for n in range(rows):
        relation = RELATIONS[n % 3]
        writer.writerow([1 + n // 1000, 1 + n // 250 % 4, 101 + n % 250, 60 + n % 50,
                         f"住户{n}", f"139{n:08d}", relation,
                         "2099-12-31" if relation == "tenant" else ""])
    return out.getvalue().encode("utf-8-sig")


async def bench(mongo_url: str, redis_url: str, rows: int) -> None:
    mongo, redis = connect_mongo(mongo_url), connect_redis(redis_url)
    db = mongo[f"bench_{uuid.uuid4().hex[:8]}"]
    try:
        data = sample_file(rows)
        started = time.perf_counter()
        await db.baseline.insert_many([{"row": n, "payload": "x" * 80} for n in range(rows)])
        baseline = time.perf_counter() - started

        importer = await prepared_importer(db, redis)
        community = await db.communities.insert_one({"code": "bench", "name": "Bench"})
        cid = str(community.inserted_id)
        timings = {}
        for run in ("first import", "re-import"):
            started = time.perf_counter()
            report = await importer.run(cid, data, by="bench")
            timings[run] = time.perf_counter() - started
            assert report["failed"] == 0, report["errors"][:5]
        assert report["unchanged"] == rows, report

        print(f"baseline: insert_many of {rows} documents: {baseline:.2f} s")
        for run, seconds in timings.items():
            print(f"{run} of {rows} rows: {seconds:.2f} s = {seconds / baseline:.1f}x baseline"
                  f" ({rows / seconds:.0f} rows/s)")
    finally:
        await mongo.drop_database(db.name)
        await redis.aclose(close_connection_pool=True)
        await mongo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        mongo_url = os.environ.get("MONGODB_URI") or stack.enter_context(start_mongo(None)).url
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(start_redis(None)).url
        asyncio.run(bench(mongo_url, redis_url, args.rows))


if __name__ == "__main__":
    main()
