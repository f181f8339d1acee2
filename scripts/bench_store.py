"""CPU of the embedded MongoDB-protocol server per operation: the launcher's read-path
patches (server/mongo_wire.py, `speed_up`) against the same launcher without them
(`--no-speedups`), measured in one run on copies of one SQLite file.

    python -m scripts.bench_store [--docs 20000] [--ops 200]

Loads `--docs` access-log lines (20 communities, 200 gates, with models/access_log.py's
indexes), 2,000 places and 200 gates (models/places.py's indexes) and a few open alarms
through the patched server, copies the file for the baseline (without the patched
server's own indexes), then runs each operation `--ops` times against each server, the
two taking turns a tenth at a time on the same data. It counts the CPU time of the store
process (utime + stime of every thread, from /proc), not wall time, and the turns let
both meet the same machine load. The access-log page
is the app's own query (models/access_log.py, `AccessLog.query`), first page and the
next by its cursor; each page follows a write to the collection, as in the soak (a
write made mongoeco forget what its per-query probes had learnt).

Then `--clients` connections at once ask the mix for `--seconds` against each store in
turn (the baseline first): operations answered, latency, CPU per operation, the way the
soak loads it (many writers and readers together: lock waits show there).

The mix weighs the operations as the soak asks for them per 100 requests (80 `/api/me`:
two reads each; 15 access-log pages: the page, the gates it names and five reads; 5
remote opens: about six reads, three inserts and three updates), docs/embedded-mongo.md.
"""

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bson import ObjectId
from pymongo import AsyncMongoClient, ReturnDocument

from models.access_log import INDEXES as ACCESS_LOG_INDEXES
from models.access_log import AccessLog
from models.places import INDEXES as PLACE_INDEXES
from server.embedded import start_mongo

COMMUNITIES, GATES, PLACES = 20, 200, 2000
# Store operations per 100 soak requests (module docstring).
MIX = {"find_one by _id": 200, "find_one by unique key": 65, "access-log page": 15,
       "gate names (find, $in)": 15, "insert_one (access log)": 15,
       "find_one_and_update ($inc)": 15}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def line(rng: random.Random, communities, gates, at: datetime) -> dict:
    return {"_id": ObjectId(), "community_id": rng.choice(communities),
            "gate_id": rng.choice(gates), "direction": rng.choice(("in", "out")),
            "at": at, "result": "allow", "reason": "ok", "source": "gate",
            "kind": "resident", "pass_id": f"p{rng.randrange(5000)}",
            "subject": f"r{rng.randrange(3000)}"}


async def load(url: str, docs: int) -> dict:
    rng = random.Random(7)
    client = AsyncMongoClient(url)
    db = client.bench
    communities = [ObjectId() for _ in range(COMMUNITIES)]
    gates = [{"_id": ObjectId(), "community_id": communities[i % COMMUNITIES],
              "key": f"gate-{i}", "name": f"Gate {i}"} for i in range(GATES)]
    for name, indexes in {**ACCESS_LOG_INDEXES, **PLACE_INDEXES}.items():
        await db[name].create_indexes(indexes)
    await db.gates.insert_many(gates)
    await db.places.insert_many([{"key": f"place-{i}", "community_id": communities[i % COMMUNITIES],
                                  "kind": "room", "path": [f"b{i % 9}", f"r{i}"]}
                                 for i in range(PLACES)])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    gate_ids = [g["_id"] for g in gates]
    for first in range(0, docs, 1000):
        await db.access_log.insert_many([line(rng, communities, gate_ids,
                                              start + timedelta(seconds=7 * i))
                                         for i in range(first, min(docs, first + 1000))])
    ids = [d["_id"] async for d in db.access_log.find({}, {"_id": 1}).limit(2000)]
    await client.close()
    return {"communities": communities, "gates": gates, "ids": ids}


def operations(db, data: dict, rng: random.Random):
    log = AccessLog(db)
    communities, gates = data["communities"], data["gates"]
    gate_ids = [g["_id"] for g in gates]

    async def write_then_page(cursor: bool):
        await db.access_log.insert_one(line(rng, communities, gate_ids, datetime.now(UTC)))
        page = await log.query(str(rng.choice(communities)), limit=20)
        if cursor:
            await log.query(str(rng.choice(communities)), cursor=page["next_cursor"], limit=20)

    async def gate_names():
        community = rng.choice(communities)
        mine = [g["_id"] for g in gates if g["community_id"] == community]
        await db.gates.find({"community_id": community, "_id": {"$in": rng.sample(mine, 3)}},
                            {"name": 1}).to_list(None)

    return {
        "find_one by _id": lambda: db.access_log.find_one({"_id": rng.choice(data["ids"])}),
        "find_one by unique key": lambda: db.places.find_one(
            {"key": f"place-{rng.randrange(PLACES)}"}),
        "insert_one (access log)": lambda: db.access_log.insert_one(
            line(rng, communities, gate_ids, datetime.now(UTC))),
        "find_one_and_update ($inc)": lambda: db.counters.find_one_and_update(
            {"_id": f"c{rng.randrange(50)}"}, {"$inc": {"n": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER),
        "gate names (find, $in)": gate_names,
        "aggregate ($match, $group)": lambda: db.access_log.aggregate(
            [{"$match": {"community_id": rng.choice(communities), "result": "deny"}},
             {"$group": {"_id": "$reason", "n": {"$sum": 1}}}]),
        # Two operations each (the write, then the page), counted as two.
        "write + access-log page": lambda: write_then_page(False),
        "write + page + next page": lambda: write_then_page(True),
    }


STEPS = {"write + access-log page": 2, "write + page + next page": 3}


async def measure(stores: dict, data: dict, ops: int, rounds: int = 10) -> dict:
    """{label: {operation: CPU seconds per operation}}; the stores take turns, `ops //
    rounds` operations at a time, so both meet the same machine load."""
    clients = {label: AsyncMongoClient(mongo.url) for label, mongo in stores.items()}
    runs = {label: operations(clients[label].bench, data, random.Random(11)) for label in stores}
    result: dict = {label: {} for label in stores}
    for name in runs["baseline"]:
        spent = dict.fromkeys(stores, 0.0)
        for label in stores:
            for _ in range(3):  # warm: the first use of a query shape builds its indexes
                await _done(runs[label][name]())
        for _ in range(rounds):
            for label, mongo in stores.items():
                before = cpu_seconds(mongo.process.pid)
                for _ in range(ops // rounds):
                    await _done(runs[label][name]())
                spent[label] += cpu_seconds(mongo.process.pid) - before
        for label in stores:
            result[label][name] = spent[label] / (ops // rounds * rounds * STEPS.get(name, 1))
    for label, figures in result.items():
        # The page alone: a write and a page cost the store what the two would apart.
        figures["access-log page"] = (figures["write + access-log page"] * 2
                                      - figures["insert_one (access log)"])
        await clients[label].close()
    return result


async def under_load(mongo, data: dict, clients: int, seconds: float) -> dict:
    """`clients` coroutines, each its own connection, asking the soak's mix at once for
    `seconds`: operations answered, their latency and the store's CPU per operation."""
    latencies: list[float] = []
    names = [("write + access-log page" if n == "access-log page" else n) for n in MIX]
    weights = list(MIX.values())

    async def client(seed: int, until: float):
        connection = AsyncMongoClient(mongo.url)
        rng = random.Random(seed)
        run = operations(connection.bench, data, rng)
        while time.monotonic() < until:
            started = time.monotonic()
            await _done(run[rng.choices(names, weights)[0]]())
            latencies.append(time.monotonic() - started)
        await connection.close()

    before = cpu_seconds(mongo.process.pid)
    until = time.monotonic() + seconds
    await asyncio.gather(*(client(i, until) for i in range(clients)))
    latencies.sort()
    return {"ops": len(latencies), "cpu": (cpu_seconds(mongo.process.pid) - before) / len(latencies),
            "p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
            "max": latencies[-1]}


async def _done(awaitable):
    value = await awaitable
    if hasattr(value, "to_list"):
        await value.to_list(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--clients", type=int, default=30,
                        help="concurrent clients for the mixed load (0: skip it)")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        base, fast = Path(tmp, "baseline.sqlite3"), Path(tmp, "patched.sqlite3")
        started = time.monotonic()
        with start_mongo(fast) as mongo:
            data = asyncio.run(load(mongo.url, args.docs))
            load_cpu = cpu_seconds(mongo.process.pid)
            with (contextlib.closing(sqlite3.connect(fast)) as source,
                  contextlib.closing(sqlite3.connect(base)) as copy):
                source.backup(copy)  # consistent while the server runs (WAL)
        with contextlib.closing(sqlite3.connect(base)) as copy:  # the file as unpatched made it
            for (name,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                        "(name LIKE 'xq_kind_%' OR name LIKE 'xq_sort_%')"
                                        ).fetchall():
                copy.execute(f"DROP INDEX {name}")
        print(f"loaded {args.docs} access-log lines in {time.monotonic() - started:.0f} s "
              f"({load_cpu:.0f} s of store CPU)")
        with start_mongo(base, speedups=False) as plain, start_mongo(fast) as patched:
            figures = asyncio.run(measure({"baseline": plain, "patched": patched}, data,
                                          args.ops))
            loaded = {label: asyncio.run(under_load(mongo, data, args.clients, args.seconds))
                      for label, mongo in (("baseline", plain), ("patched", patched))
                      if args.clients}
    print(f"\nstore CPU per operation, ms ({args.docs} access-log lines, {args.ops} runs each)")
    print(f"{'operation':34} {'baseline':>9} {'patched':>9}  ratio")
    for name in figures["baseline"]:
        b, p = figures["baseline"][name] * 1000, figures["patched"][name] * 1000
        print(f"{name:34} {b:9.2f} {p:9.2f}  {p / b:.2f}×")
    mix = {label: sum(f[name] * w for name, w in MIX.items()) / sum(MIX.values())
           for label, f in figures.items()}
    print(f"{'soak mix (weighted)':34} {mix['baseline'] * 1000:9.2f} {mix['patched'] * 1000:9.2f}"
          f"  {mix['patched'] / mix['baseline']:.2f}×")
    print(f"patched vs unpatched CPU per op on the soak's mix: {mix['patched'] / mix['baseline']:.2f}×")
    for label, run in loaded.items():
        print(f"{label}, {args.clients} clients at once for {args.seconds:.0f} s on the mix: "
              f"{run['ops']} operations ({run['ops'] / args.seconds:.0f}/s), store CPU "
              f"{run['cpu'] * 1000:.2f} ms per operation, latency p50 {run['p50'] * 1000:.0f} "
              f"ms, p99 {run['p99'] * 1000:.0f} ms, max {run['max'] * 1000:.0f} ms")
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
