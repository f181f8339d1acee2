"""Benchmark: 500 households reading a notice, and the read-count query over 10,000 residents.

    python -m scripts.bench_notices [--residents 10000] [--households 500] [--concurrency 50] [--runs 20]

Starts the embedded stores (or uses MONGODB_URI / REDIS_URL) and the server in this
process, seeds one community with `--residents` residents, four to a room, publishes a
notice to all of them (the recipients are written by the outbox effect), then has one
resident of each of `--households` rooms read it over HTTP, `--concurrency` at a time —
and every one of them again, as a client retrying would. Prints the seconds that took
(the target: within a minute) and the read receipts stored (must be exactly one per
reader). Then times the staff's read-count query (per building, over every recipient)
and the "who has not read" list of one building, each beside a bare `find` returning
the same recipients from the same store in the same run, as a ratio (medians of `--runs`).
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import tornado.httpclient
import tornado.httpserver
import tornado.netutil
from bson import ObjectId

from models.access import Principal
from models.notices import UNREAD_PAGE
from server.app import XiaoquApp
from server.embedded import start_mongo, start_redis
from server.settings import load_settings
from server.stores import connect_mongo, connect_redis

PER_ROOM = 4
ROOMS_PER_UNIT = 50
UNITS_PER_BUILDING = 5
BATCH = 500


def room_path(n: int) -> str:
    building, rest = divmod(n, ROOMS_PER_UNIT * UNITS_PER_BUILDING)
    unit, room = divmod(rest, ROOMS_PER_UNIT)
    return f"{building + 1}-{unit + 1}-{room + 101}"


async def seed(app: XiaoquApp, residents: int) -> tuple[str, list[tuple[ObjectId, str]]]:
    """The community and its residents (bulk-written: the bench is about reading)."""
    community = await app.places.create_community("Bench Garden", "bench")
    cid = community["_id"]
    now = app.clock.now()
    people = [{"_id": ObjectId(), "openid": f"bench-{n}", "name": f"住户{n}", "status": "active",
               "created_at": now} for n in range(residents)]
    for at in range(0, residents, BATCH):  # small writes: the embedded store answers each in time
        await app.db.residents.insert_many(people[at:at + BATCH])
    links = [{"community_id": cid, "resident_id": p["_id"], "room_path": room_path(n // PER_ROOM),
              "relation": "owner" if n % PER_ROOM == 0 else "family", "lease_end": None,
              "state": "approved", "requested_at": now, "history": []}
             for n, p in enumerate(people)]
    for at in range(0, residents, BATCH):
        await app.db.room_links.insert_many(links[at:at + BATCH])
    return str(cid), [(p["_id"], link["room_path"]) for p, link in zip(people, links)]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def timed(runs: int, work) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await work()
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


async def main(args) -> None:
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        mongo_url = os.environ.get("MONGODB_URI") or stack.enter_context(start_mongo(None)).url
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(start_redis(None)).url
        settings = load_settings(mongodb_uri=mongo_url, redis_url=redis_url,
                                 mongodb_db=f"bench_notices_{os.getpid()}", data_dir=Path(tmp),
                                 access_token_seconds=3600)
        mongo = connect_mongo(mongo_url)
        app = XiaoquApp(settings, mongo, connect_redis(redis_url))
        await app.startup()
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = tornado.httpclient.AsyncHTTPClient(force_instance=True,
                                                    max_clients=args.concurrency)
        try:
            start = time.perf_counter()
            cid, people = await seed(app, args.residents)
            office = Principal("staff", "bench-office", {cid: frozenset({"manager"})})
            notice = await app.notices.create(office, cid, title="停水通知", body="明天停水",
                                              audience={"places": [], "who": "residents"})
            await app.notices.act(office, cid, str(notice["_id"]), "publish")
            await app.outbox.settled()  # the recipients are written beside the answer
            print(f"seeded {args.residents} residents in {args.residents // PER_ROOM} rooms and "
                  f"published to them in {time.perf_counter() - start:.1f} s")

            readers = [people[n * PER_ROOM][0] for n in range(args.households)]
            tokens = [(await app.auth.start_session(str(rid), "resident"))["access_token"]
                      for rid in readers]
            url = f"{base}/api/communities/{cid}/notices/{notice['_id']}/read"
            gate = asyncio.Semaphore(args.concurrency)

            async def read(token: str) -> int:
                async with gate:
                    reply = await client.fetch(url, method="POST", body=b"", raise_error=False,
                                               headers={"Authorization": f"Bearer {token}"})
                    return reply.code

            start = time.perf_counter()
            codes = await asyncio.gather(*(read(tok) for tok in tokens + tokens))
            seconds = time.perf_counter() - start
            receipts = await app.db.notice_recipients.count_documents(
                {"notice_id": notice["_id"], "read_at": {"$ne": None}})
            ok = codes.count(200)
            print(f"{args.households} households read it (each twice: {len(codes)} requests, "
                  f"{ok} answered 200) in {seconds:.1f} s ({len(codes) / seconds:.0f} req/s); "
                  f"target within 60 s: {'met' if seconds <= 60 else 'MISSED'}")
            print(f"read receipts stored: {receipts} (expected exactly {args.households}: "
                  f"{'ok' if receipts == args.households else 'WRONG'})")

            nid, building = str(notice["_id"]), "1"
            report = await app.notices.reads(cid, nid, None)
            assert (report["recipients"], report["read"]) == (args.residents, args.households)
            counts = await timed(args.runs, lambda: app.notices.reads(cid, nid, None))
            bare = await timed(args.runs, lambda: app.db.notice_recipients.find(
                {"notice_id": notice["_id"]}, {"building": 1, "read_at": 1}).to_list(None))
            print(f"read counts per building over {report['recipients']} recipients: "
                  f"{counts:.1f} ms; bare find of the same recipients: {bare:.1f} ms "
                  f"(ratio {counts / bare:.2f})")
            unread = await timed(args.runs, lambda: app.notices.reads(cid, nid, building))
            bare_one = await timed(args.runs, lambda: app.db.notice_recipients.find(
                {"notice_id": notice["_id"], "building": building}).limit(UNREAD_PAGE).to_list(None))
            left = (await app.notices.reads(cid, nid, building))["unread_total"]
            # Its baseline: the bare reads of the same data — every recipient, then the page.
            print(f"counts + the first {UNREAD_PAGE} of the {left} who have not read in building "
                  f"{building}: {unread:.1f} ms; bare finds of all recipients and of that page: "
                  f"{bare + bare_one:.1f} ms (ratio {unread / (bare + bare_one):.2f})")
        finally:
            client.close()
            server.stop()
            await mongo.drop_database(settings.mongodb_db)
            await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--households", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
