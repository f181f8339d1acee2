"""`python -m gate_bridge --config bridge.toml`: run the bridge until stopped (SIGTERM/Ctrl-C)."""

import argparse
import asyncio
import contextlib
import logging
import signal

from gate_bridge import drivers
from gate_bridge.bridge import Bridge, load_config
from gate_bridge.store import Store


async def run(path: str) -> None:
    config, document = load_config(path)
    scanner, relay, door, inputs = await drivers.from_config(document)
    store = Store(config.store_path, config.max_events)
    bridge = Bridge(config, store, scanner, relay, door, inputs)
    task = asyncio.create_task(bridge.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gate_bridge", description=__doc__)
    parser.add_argument("--config", required=True, help="path to bridge.toml")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run(args.config))


main()
