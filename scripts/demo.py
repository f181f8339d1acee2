"""The demo, composed from the outside of the server: what `make run` runs.

    python -m scripts.demo

Starts what is not configured — embedded MongoDB-protocol and Redis servers
(data under XIAOQU_DATA_DIR, default ./var) unless MONGODB_URI / REDIS_URL are
given, the fake WeChat server unless WECHAT_BASE_URL is — seeds "Demo Garden"
with the bootstrap tool and the managers the API uses (once), starts
`python -m server` on those stores, then simulated bridges for the demo's
gates, and prints the URLs and the demo logins. Ctrl-C (or SIGTERM) stops
everything it started. Refuses to run with XIAOQU_MODE=production.
"""

import asyncio
import contextlib
import os
import signal
import sys

from scripts.fake_wechat import start_fake_wechat
from scripts.seed_demo import demo_bridge_credentials, login_help, seed_demo
from scripts.simulate_bridges import start_simulated_bridges
from server.app import XiaoquApp
from server.embedded import start_missing_stores
from server.settings import SettingsError, load_settings
from server.stores import connect_mongo, connect_redis

SERVER_STOP_SECONDS = 30  # the server drains running requests for up to 10 s


async def seed(settings) -> None:
    """Seed the demo community (once) and fresh bridge credentials for its gates."""
    app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri), connect_redis(settings.redis_url))
    try:
        await app.startup()
        await seed_demo(app)
        await demo_bridge_credentials(app, settings.data_dir / "bridges.json")
    finally:
        await app.close()


@contextlib.asynccontextmanager
async def serving(env: dict[str, str]):
    """`python -m server` for the `async with` block, entered once it listens; yields the
    process. Its output passes through. Leaving the block sends it SIGTERM."""
    # Its own session, like every process the demo starts: Ctrl-C reaches the demo alone,
    # which stops the bridges, then the server, then the stores it drains into.
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "server", env=env,
                                                  stdout=asyncio.subprocess.PIPE,
                                                  start_new_session=True)
    up = asyncio.Event()

    async def relay_output() -> None:
        async for line in server.stdout:
            sys.stdout.write(line.decode())
            sys.stdout.flush()
            if line.startswith(b"xiaoqu is up"):
                up.set()

    relay = asyncio.create_task(relay_output())
    exited = asyncio.create_task(server.wait())
    try:
        await asyncio.wait([exited, asyncio.create_task(up.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if not up.is_set():
            raise SystemExit(f"xiaoqu demo: the server exited with status {server.returncode}")
        yield server
    finally:
        if server.returncode is None:
            server.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(exited), SERVER_STOP_SECONDS)
            except TimeoutError:
                server.kill()
        await exited
        await relay


def printed_urls(http_port: int, stores: dict[str, str]) -> str:
    base = f"http://127.0.0.1:{http_port}"
    lines = ["Demo Garden is ready:", f"  admin view: {base}/admin", f"  API docs:   {base}/docs"]
    if stores:
        # so operator tools (bootstrap, scripts.import_residents) can reach the embedded stores
        lines.append("  stores:     " + " ".join(f"{k.upper()}={v}" for k, v in stores.items()))
    return "\n".join(lines)


async def demo() -> int:
    settings = load_settings()
    if settings.mode == "production":
        raise SettingsError("the demo does not run with XIAOQU_MODE=production "
                            "(see docs/operations.md for a real start)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as started:  # stopped in reverse order
        embedded = start_missing_stores(settings, started)
        given = dict(embedded)
        if "wechat_base_url" not in settings.model_fields_set:
            given["wechat_base_url"] = started.enter_context(start_fake_wechat()).url
        settings = settings.model_copy(update=given)
        await seed(settings)

        env = {**os.environ, **{name.upper(): url for name, url in given.items()},
               "XIAOQU_DATA_DIR": str(settings.data_dir)}
        server = await started.enter_async_context(serving(env))
        started.enter_context(start_simulated_bridges(
            settings.data_dir / "bridges.json", settings.gate_port, settings.data_dir / "bridges"))
        print(printed_urls(settings.http_port, embedded), login_help(), sep="\n", flush=True)

        exited = asyncio.create_task(server.wait())
        await asyncio.wait([exited, asyncio.create_task(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        return server.returncode or 0


def main() -> None:
    try:
        sys.exit(asyncio.run(demo()))
    except SettingsError as exc:
        sys.exit(f"xiaoqu demo: {exc}")


if __name__ == "__main__":
    main()
