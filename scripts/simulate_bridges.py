"""Simulated gate bridges (scanner, relay and door simulated) against a gate hub.

    python -m scripts.simulate_bridges --creds bridges.json [--host H --port P]
    python -m scripts.simulate_bridges --provision DEMO --count 4

`--creds` reads a JSON list of {"bridge_id", "secret"}; `--provision CODE`
(re-)provisions the bridges of community CODE's gates through the app's own
stores (MONGODB_URI / REDIS_URL settings) and runs one per gate, up to
`--count`. `--events N --rate R`: each bridge records N door events, R a second
(the fault drills count them in the store afterwards). Used by the demo, tests,
benchmarks and drills (`run_bridges`).
"""

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gate_bridge import logs
from gate_bridge.bridge import INPUTS, Bridge, BridgeConfig
from gate_bridge.drivers import SimulatedContact, SimulatedDoor, SimulatedRelay, SimulatedScanner
from gate_bridge.store import Store
from server.embedded import python_module, running


def make_bridge(bridge_id: str, secret: str, host: str, port: int, data_dir: Path,
                door: dict | None = None, clock=time.time, **options) -> Bridge:
    """A Bridge on simulated hardware (the exit, tamper, power and fire inputs included);
    `door` tunes SimulatedDoor (auto, open_after, ...)."""
    config = BridgeConfig(bridge_id=bridge_id, secret=secret, host=host, port=port,
                          tls=options.pop("tls", False), allow_plain=True,
                          store_path=str(data_dir / f"{bridge_id}.sqlite"), **options)
    relay = SimulatedRelay(bridge_id)
    return Bridge(config, Store(config.store_path, config.max_events), SimulatedScanner(),
                  relay, SimulatedDoor(relay, **(door or {})),
                  {name: SimulatedContact() for name in INPUTS}, clock)


async def record_events(bridge: Bridge, count: int, rate: float) -> None:
    """`count` door events, `rate` a second (each bridge starting at a random phase)."""
    await asyncio.sleep(random.uniform(0, 1 / rate))
    for n in range(count):
        bridge.record("door_opened" if n % 2 == 0 else "door_closed", n=n)
        await asyncio.sleep(1 / rate)


async def run_bridges(creds: list[dict], host: str, port: int, data_dir: Path, events: int = 0,
                      rate: float = 1.0, **options) -> None:
    """Run simulated bridges until cancelled; each records `events` door events at `rate`/s."""
    bridges = [make_bridge(c["bridge_id"], c["secret"], host, port, data_dir, **options)
               for c in creds]
    try:
        await asyncio.gather(*(b.run() for b in bridges),
                             *(record_events(b, events, rate) for b in bridges if events))
    finally:
        for bridge in bridges:
            bridge.store.close()


@contextlib.contextmanager
def start_simulated_bridges(creds_file: Path, gate_port: int, data_dir: Path) -> Iterator[None]:
    """Simulated bridges for the credentials in `creds_file`, as their own process (the demo)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with running(python_module("scripts.simulate_bridges", "--creds", str(creds_file),
                               "--port", str(gate_port), "--data-dir", str(data_dir)),
                 stdout=subprocess.DEVNULL):
        yield


async def provision(code: str, count: int) -> list[dict]:
    from server.app import XiaoquApp
    from server.settings import load_settings
    from server.stores import connect_mongo, connect_redis
    settings = load_settings()
    app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri), connect_redis(settings.redis_url))
    try:
        community = await app.db.communities.find_one({"code": code})
        if community is None:
            raise SystemExit(f"no community with code {code!r}")
        gates = (await app.places.gates(str(community["_id"])))[:count]
        return [await app.bridges.provision(str(community["_id"]), str(g["_id"]), "simulator")
                for g in gates]
    finally:
        await app.close()


async def main_async(args) -> None:
    if args.provision:
        creds = await provision(args.provision, args.count)
    else:
        creds = json.loads(Path(args.creds).read_text())[: args.count]
    print(f"simulating {len(creds)} bridges against {args.host}:{args.port}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bridges-") as tmp:
        await run_bridges(creds, args.host, args.port, Path(args.data_dir or tmp),
                          events=args.events, rate=args.rate)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.simulate_bridges",
                                     description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--creds", help="JSON list of {bridge_id, secret}")
    source.add_argument("--provision", metavar="CODE", help="provision the gates of this community")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--data-dir", help="where the bridges keep their SQLite files")
    parser.add_argument("--events", type=int, default=0, help="door events each bridge records")
    parser.add_argument("--rate", type=float, default=1.0, help="events a second per bridge")
    args = parser.parse_args()
    logs.configure()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
