"""The server's entry point: `python -m server` serves; `python -m server bootstrap` makes
the first admin account.

Serving: the HTTP API and the gate hub on the stores named by MONGODB_URI and
REDIS_URL (outside production, embedded stores under the data dir when they
are not given). SIGTERM or Ctrl-C: stop accepting, let running requests
finish, close the clients, stop what was started. The demo is composed around
this from the outside (`python -m scripts.demo`, what `make run` runs).
"""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from gate_bridge import logs
from server import bootstrap, metrics, processes
from server.app import XiaoquApp
from server.embedded import EmbeddedError, start_missing_stores
from server.gate_hub import start_gate_hub
from server.settings import SettingsError, load_settings
from server.stores import connect_mongo, connect_redis

log = logging.getLogger("xiaoqu")
DRAIN_SECONDS = 10.0


async def serve() -> None:
    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as started:
        embedded = start_missing_stores(settings, started)
        settings = settings.model_copy(update=embedded)
        app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri),
                        connect_redis(settings.redis_url))
        await app.startup()
        app.start_jobs()  # every process runs them; their leases let one work at a time
        http = app.listen(settings.http_port)  # proxy headers: handlers/base.py, TRUSTED_PROXY_HOPS
        gate_hub = await start_gate_hub(app)
        base = f"http://127.0.0.1:{settings.http_port}"
        print(f"xiaoqu is up: API docs {base}/docs, readiness {base}/readyz", flush=True)
        if embedded:
            # so operator tools (bootstrap, scripts.import_residents) can reach the embedded stores
            print("  stores: " + " ".join(f"{k.upper()}={v}" for k, v in embedded.items()),
                  flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

        # In order: nothing new accepted; running requests finish (a remote open still needs
        # its bridge); the bridges are told bye; buffered writes flushed; the stores last.
        log.info("shutting down: no new connections, finishing running requests")
        http.stop()
        gate_hub.stop_accepting()
        await app.drained(DRAIN_SECONDS)
        await gate_hub.stop()
        await http.close_all_connections()
        await app.close()
    metrics.process_exited()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="serve with N processes on this host, on HTTP_PORT..+N-1 and "
                             "GATE_PORT..+N-1 (server/processes.py)")
    commands = parser.add_subparsers(dest="command", metavar="{bootstrap}")
    bootstrap.add_arguments(commands.add_parser(
        "bootstrap", help=bootstrap.__doc__.split("\n")[0], description=bootstrap.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    logs.configure()  # until the settings say otherwise (serve)
    try:
        if args.command == "bootstrap":
            sys.exit(bootstrap.run(args))
        if args.processes < 1:
            parser.error("--processes must be at least 1")
        if args.processes > 1:
            sys.exit(asyncio.run(processes.supervise(args.processes)))
        asyncio.run(serve())
    except (SettingsError, EmbeddedError) as exc:
        sys.exit(f"xiaoqu: {exc}")
