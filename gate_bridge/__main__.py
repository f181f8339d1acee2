"""`python -m gate_bridge --config bridge.toml`: run the bridge until stopped (SIGTERM/Ctrl-C)."""

import argparse
import asyncio
import logging
import signal

from gate_bridge import drivers, logs
from gate_bridge.bridge import Bridge, load_config
from gate_bridge.store import Store

log = logging.getLogger("gate_bridge")


async def run(path: str) -> None:
    config, document = load_config(path)
    scanner, relay, door, inputs = await drivers.from_config(document)
    store = Store(config.store_path, config.max_events)
    bridge = Bridge(config, store, scanner, relay, door, inputs)
    task = asyncio.create_task(bridge.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # it failed by itself: say why
        stopped.cancel()
        store.close()
        task.result()
    # Within config.shutdown_timeout: bye to the hub (half of it at most), then stop.
    started = loop.time()
    log.info("%s: stopping", config.bridge_id)
    await bridge.say_bye(config.shutdown_timeout / 2)
    task.cancel()
    await asyncio.wait([task], timeout=max(0.0, config.shutdown_timeout - (loop.time() - started)))
    store.close()
    log.info("%s: stopped", config.bridge_id)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gate_bridge", description=__doc__)
    parser.add_argument("--config", required=True, help="path to bridge.toml")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--log-format", choices=logs.FORMATS, default="auto",
                        help="auto: text on a terminal, JSON otherwise (when python-json-logger "
                             "is installed)")
    args = parser.parse_args()
    try:
        logs.configure(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(run(args.config))


main()
