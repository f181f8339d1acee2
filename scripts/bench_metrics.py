"""What measuring costs: store commands through the timed clients vs the bare ones, and a
gate decision's counters, each as a ratio against a baseline measured in the same run.

    python -m scripts.bench_metrics [--batch 100] [--pairs 60]

1. Redis GET round trips: `server.stores.TimedRedis` (a histogram observation per
   command) vs redis-py's own client on the very same connection pool (goal ≤ 1.05×).
2. MongoDB `find_one` round trips: the client with `MongoMonitor` listening vs one
   with the same timeouts and no listener (goal ≤ 1.05×).
3. The counters of one access-log line (decision by source/result/reason and the
   decision-latency histogram), per call, against a bare `dict` increment.

The two sides run in back-to-back batches (alternating which goes first), so both of
a pair see the same load; the median of the pairs' ratios is printed. Uses embedded
MongoDB-wire and Redis servers unless MONGODB_URI / REDIS_URL are set.
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections import Counter

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from server import metrics
from server.embedded import start_mongo, start_redis
from server.stores import MONGO_TIMEOUT_MS, connect_mongo, connect_redis


async def _seconds(work, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await work()
    return time.perf_counter() - started


async def _paired(bare, timed, count: int, pairs: int) -> tuple[float, float, float]:
    """Batches of `count` calls, the two sides back to back (alternating which goes first),
    so both of a pair see the same load: (bare s/call, timed s/call, median pair ratio)."""
    bare_times, timed_times, ratios = [], [], []
    for pair in range(pairs):
        order = [(bare_times, bare), (timed_times, timed)]
        for times, work in order if pair % 2 else order[::-1]:
            times.append(await _seconds(work, count))
        ratios.append(timed_times[-1] / bare_times[-1])
    return (statistics.median(bare_times) / count, statistics.median(timed_times) / count,
            statistics.median(ratios))


async def redis_ratio(url: str, count: int, pairs: int) -> tuple[float, float, float]:
    timed = connect_redis(url)
    bare = Redis(connection_pool=timed.connection_pool)  # only the client class differs
    await timed.set("bench:metrics", "x")
    try:
        return await _paired(lambda: bare.get("bench:metrics"),
                                lambda: timed.get("bench:metrics"), count, pairs)
    finally:
        await timed.delete("bench:metrics")
        await timed.aclose()  # and the pool they share


async def mongo_ratio(url: str, count: int, pairs: int) -> tuple[float, float, float]:
    timed = connect_mongo(url)
    bare = AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
                            connectTimeoutMS=MONGO_TIMEOUT_MS,
                            socketTimeoutMS=10 * MONGO_TIMEOUT_MS)
    collection = "bench_metrics"
    await timed.bench[collection].insert_one({"_id": 1})
    try:
        return await _paired(lambda: bare.bench[collection].find_one({"_id": 1}),
                                lambda: timed.bench[collection].find_one({"_id": 1}),
                                count, pairs)
    finally:
        await timed.drop_database("bench")
        await timed.close()
        await bare.close()


def counter_cost(count: int) -> tuple[float, float]:
    plain = Counter()
    started = time.perf_counter()
    for _ in range(count):
        plain[("gate", "allow", "ok")] += 1
    bare = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for _ in range(count):
        metrics.DECISIONS.labels("gate", "allow", "ok").inc()
        metrics.DECISION_SECONDS.labels("gate").observe(0.002)
    return bare, (time.perf_counter() - started) / count


async def run(args) -> None:
    with contextlib.ExitStack() as stack:
        mongo_url = os.environ.get("MONGODB_URI") or stack.enter_context(start_mongo(None)).url
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(start_redis(None)).url
        bare, timed, ratio = await redis_ratio(redis_url, args.batch, args.pairs)
        print(f"redis GET: timed {timed * 1e6:.1f} µs vs bare {bare * 1e6:.1f} µs -> "
              f"{ratio:.3f}x (goal <= 1.05x)", flush=True)
        bare, timed, ratio = await mongo_ratio(mongo_url, args.batch // 4, args.pairs)
        print(f"mongodb find_one: monitored {timed * 1e6:.0f} µs vs bare {bare * 1e6:.0f} µs -> "
              f"{ratio:.3f}x (goal <= 1.05x)", flush=True)
        bare, timed = counter_cost(100_000)
        print(f"an access-log line's counters: {timed * 1e6:.2f} µs vs a dict increment "
              f"{bare * 1e6:.2f} µs -> {timed / bare:.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_metrics", description=__doc__)
    parser.add_argument("--batch", type=int, default=100, help="calls per side and pair")
    parser.add_argument("--pairs", type=int, default=60)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
