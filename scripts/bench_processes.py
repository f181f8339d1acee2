"""Remote opens across processes: 3 server processes on the same stores, 10,000 bridges
spread over them, and a remote open's latency when the HTTP request lands on another
process than the bridge's vs on the same one (goal: cross p99 <= 2x same p99).

    python -m scripts.bench_processes [--bridges 10000] [--opens 200]

The bridges are light protocol clients (the bridge's own session state machine, no
SQLite store each) in three processes, each connected to one server's gate hub; they
heartbeat and acknowledge an open at once (received, actuated, opened), so the figure is
the server side: HTTP -> gate service -> (Redis -> the other process ->) bridge and back.
Opens alternate same / cross, one at a time, at random gates, in one run.
"""

import argparse
import asyncio
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from gate_bridge import protocol as p
from scripts.bench_gates import HEARTBEAT, Refused, connect_client, raise_fd_limit
from scripts.drills.common import Drill, Process, percentile

PROCESSES = 3


async def bridges(creds_file: str, port: int) -> None:
    """Hidden mode: hold these bridges' sessions on `port`; acknowledge every open."""
    creds = json.loads(Path(creds_file).read_text())
    held = []

    def acknowledge(index: int):
        def on_frame(msg: dict) -> None:
            if msg["op"] == p.OPEN:
                for level in (p.RECEIVED, p.ACTUATED, p.OPENED):
                    held[index].send(p.message(p.ACK, id=msg["id"], level=level))
        return on_frame

    refused = 0

    async def connect(index: int, cred: dict):
        nonlocal refused
        # A loaded hub misses its handshake deadline now and then, or says `busy`: dial again
        # (after the hub's retry_after, as a bridge does).
        for _ in range(20):
            try:
                return await asyncio.wait_for(connect_client(
                    port, cred["bridge_id"], p.derive_key(cred["secret"]), acknowledge(index),
                    # many loopback source addresses: one has only ~28k ephemeral ports
                    source=f"127.0.{1 + index // 20000}.{1 + (index // 250) % 250}"), 15)
            except Refused as exc:
                refused += 1
                await asyncio.sleep(exc.retry_after or 0.5)
            except (TimeoutError, OSError):
                continue
        raise RuntimeError(f"{cred['bridge_id']} could not connect")
    async def heartbeats() -> None:
        # From the first connection on: connecting 10,000 takes minutes on a loaded machine,
        # and a hub ends a session silent for a few heartbeats (the first held then went).
        while True:
            await asyncio.sleep(HEARTBEAT)
            for client in held:
                client.send(p.message(p.HEARTBEAT, t=time.time()))
    beating = asyncio.create_task(heartbeats())
    for start in range(0, len(creds), 25):  # a bounded rate: 25 handshakes at a time
        held += await asyncio.gather(*(connect(start + i, c)
                                       for i, c in enumerate(creds[start:start + 25])))
    print("READY", len(held), refused, flush=True)
    await beating


async def measure(d: Drill, count: int, opens: int) -> dict:
    mongo, redis = await d.mongo(memory=True), await d.redis(persistent=False)
    servers = [await d.server(mongo, redis, name=f"server{i}") for i in range(PROCESSES)]
    started = time.monotonic()
    site = await d.seed(gates=count)
    d.say(f"seeded {count} gates and bridges in {time.monotonic() - started:.0f} s")
    holder, clients = {}, []
    started = time.monotonic()
    for i, server in enumerate(servers):
        group = site.creds[i::PROCESSES]
        path = d.dir / f"bridges{i}.json"
        path.write_text(json.dumps(group))
        clients.append(await d.start(Process(
            d, f"bridges{i}", [sys.executable, "-m", "scripts.bench_processes",
                               "--serve-bridges", str(path), "--port", str(server.gate_port)])))
        holder.update({c["bridge_id"]: i for c in group})
    refused = 0
    for process in clients:  # each hub looks every bridge's key up as it authenticates
        refused += int((await process.wait_output("READY", timeout=60 + count / 10)).split()[2])
    d.say(f"{count} bridges connected across {PROCESSES} processes in "
          f"{time.monotonic() - started:.0f} s ({refused} handshakes refused busy, retried)")

    rng = random.Random(7)
    timings = {"same": [], "cross": []}
    failures = collections.Counter()
    for n in range(2 * opens):
        gate = rng.choice(site.gates)
        own = holder[gate["bridge_id"]]
        kind = "same" if n % 2 == 0 else "cross"
        server = servers[own if kind == "same" else (own + 1 + rng.randrange(PROCESSES - 1))
                         % PROCESSES]
        t0 = time.perf_counter()
        status, body = await d.call("POST", site.api(server.base, f"/gates/{gate['id']}/open"),
                                    site.token, {"reason": "benchmark", "wait": 10}, timeout=30)
        elapsed = (time.perf_counter() - t0) * 1000
        if status == 200 and body["level"] == "opened":
            timings[kind].append(elapsed)
        else:
            failures[f"{kind} {status} "
                     f"{(body or {}).get('level') or ((body or {}).get('error') or {}).get('code')}"] += 1
    return {kind: {"n": len(v), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99)}
            for kind, v in timings.items()} | {"failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_processes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bridges", type=int, default=10000)
    parser.add_argument("--opens", type=int, default=200, help="of each kind")
    parser.add_argument("--serve-bridges", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit(args.bridges + 1000)
    if args.serve_bridges:
        asyncio.run(bridges(args.serve_bridges, args.port))
        return
    d = Drill("bench_processes", False, Path(tempfile.mkdtemp(prefix="bench-processes-")))

    async def run() -> dict:
        try:
            return await measure(d, args.bridges, args.opens)
        finally:
            await d.close()
    r = asyncio.run(run())
    same, cross = r["same"], r["cross"]
    print(f"remote open, {args.bridges} bridges on {PROCESSES} processes: request on the "
          f"bridge's own process p50 {same['p50']:.1f} ms, p99 {same['p99']:.1f} ms "
          f"({same['n']}); on another process p50 {cross['p50']:.1f} ms, p99 "
          f"{cross['p99']:.1f} ms ({cross['n']}) -> p99 {cross['p99'] / same['p99']:.2f}x "
          f"(goal <= 2x); failed: {dict(r['failures']) or 0}")


if __name__ == "__main__":
    main()
