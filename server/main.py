"""Start-up: `python -m server [--demo]`.

Without MONGODB_URI / REDIS_URL it starts embedded stores with their data
under the data dir; with --demo it also starts the fake WeChat server (unless
WECHAT_BASE_URL is set) and seeds the "Demo Garden" community. SIGTERM or
Ctrl-C: stop accepting, let running requests finish, close the clients, stop
what was started.
"""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from scripts.seed_demo import demo_bridge_credentials, seed_demo
from server.app import XiaoquApp
from server.embedded import (start_fake_wechat, start_mongo, start_redis,
                             start_simulated_bridges)
from server.gate_hub import start_gate_hub
from server.settings import SettingsError, load_settings
from server.stores import connect_mongo, connect_redis

log = logging.getLogger("xiaoqu")
DRAIN_SECONDS = 10.0


async def serve(demo: bool) -> None:
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as started:
        overrides = {}
        if settings.mongodb_uri is None:
            overrides["mongodb_uri"] = started.enter_context(
                start_mongo(settings.data_dir / "mongo.sqlite3")).url
        if settings.redis_url is None:
            overrides["redis_url"] = started.enter_context(
                start_redis(settings.data_dir / "redis")).url
        if demo and "wechat_base_url" not in settings.model_fields_set:
            overrides["wechat_base_url"] = started.enter_context(start_fake_wechat()).url
        settings = settings.model_copy(update=overrides)

        app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri),
                        connect_redis(settings.redis_url))
        await app.startup()
        if demo:
            logins = await seed_demo(app)
        app.sla_watcher.start()  # every process runs one; a Redis lock lets one work at a time
        http = app.listen(settings.http_port, xheaders=settings.trust_proxy_headers)
        gate_hub = await start_gate_hub(app)
        if demo:
            creds = await demo_bridge_credentials(app, settings.data_dir / "bridges.json")
            started.enter_context(start_simulated_bridges(
                creds, settings.gate_port, settings.data_dir / "bridges"))
        print(f"xiaoqu is up: http://127.0.0.1:{settings.http_port}/docs  (API docs)\n"
              f"  readiness: http://127.0.0.1:{settings.http_port}/readyz", flush=True)
        if overrides:
            # so operator tools (e.g. scripts.import_residents) can reach the embedded stores
            print("  stores: " + " ".join(f"{k.upper()}={v}" for k, v in overrides.items()
                                          if k != "wechat_base_url"), flush=True)
        if demo:
            print(logins, flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

        log.info("shutting down: no new connections, finishing running requests")
        http.stop()
        await gate_hub.stop()
        await app.drained(DRAIN_SECONDS)
        await http.close_all_connections()
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__.split("\n")[0])
    parser.add_argument("--demo", action="store_true", help="seed and serve the demo community")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(serve(args.demo))
    except SettingsError as exc:
        sys.exit(f"xiaoqu: {exc}")
