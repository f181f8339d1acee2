"""`python -m server --processes N`: N server processes on one host, on the same stores.

Several instances on one MongoDB and one Redis is how xiaoqu scales out: any instance
answers any HTTP request, a bridge may be connected to any of them (a remote open is
relayed through Redis to the process holding the bridge), and background jobs run in
one at a time under their Redis leases. Instance i (from 0) listens on HTTP_PORT + i
and GATE_PORT + i, so a reverse proxy (HTTP, WebSocket) and an L4 balancer (bridges)
put them behind one address each: deploy/ and docs/deployment.md. Across hosts, run one
`python -m server` per port with a process manager instead (deploy/systemd/).

Embedded stores (outside production, when MONGODB_URI / REDIS_URL are not given) are
started once here and shared; prometheus-client's multiprocess directory is set up
when PROMETHEUS_MULTIPROC_DIR is not given. A process that exits by itself is started
again after a second. SIGTERM or Ctrl-C: each gets SIGTERM and drains as one process
does (server/main.py), then the stores stop.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import sys

from server.embedded import python_module, start_missing_stores
from server.settings import load_settings

STOP_SECONDS = 30.0  # a process drains requests for up to 10 s, its bridges for 5 s
RESTART_AFTER = 1.0


class Instance:
    def __init__(self, index: int, env: dict[str, str]):
        self.index, self.env = index, env
        self.process: asyncio.subprocess.Process | None = None
        self.up = asyncio.Event()
        self.relay: asyncio.Task | None = None

    async def start(self) -> None:
        self.up.clear()
        # Its own session: a Ctrl-C at the terminal reaches the supervisor alone.
        self.process = await asyncio.create_subprocess_exec(
            *python_module("server"), env=self.env, stdout=asyncio.subprocess.PIPE,
            start_new_session=True)
        self.relay = asyncio.create_task(self._relay(self.process.stdout))

    async def _relay(self, stdout) -> None:
        async for line in stdout:
            text = line.decode()
            if text.startswith("xiaoqu is up"):
                self.up.set()
            else:
                sys.stdout.write(f"[{self.index}] {text}")
                sys.stdout.flush()

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
            except TimeoutError:
                self.process.kill()
        code = await self.process.wait()
        await self.relay
        return code


async def supervise(count: int) -> int:
    settings = load_settings()  # checks the settings once, and makes the demo's secrets once
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as started:
        embedded = start_missing_stores(settings, started)
        env = {**os.environ, **{name.upper(): url for name, url in embedded.items()}}
        if "PROMETHEUS_MULTIPROC_DIR" not in env:
            metrics_dir = settings.data_dir / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        instances = [Instance(i, {**env, "HTTP_PORT": str(settings.http_port + i),
                                  "GATE_PORT": str(settings.gate_port + i)})
                     for i in range(count)]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        for instance in instances:
            await instance.start()
        stopping = asyncio.create_task(stop.wait())
        for instance in instances:
            exited = asyncio.create_task(instance.process.wait())
            up = asyncio.create_task(instance.up.wait())
            await asyncio.wait([exited, up, stopping], return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            exited.cancel()
            if not instance.up.is_set():
                for other in instances:
                    await other.stop()
                return instance.process.returncode or 1
        last_http, last_gate = settings.http_port + count - 1, settings.gate_port + count - 1
        print(f"xiaoqu is up: {count} processes, HTTP ports {settings.http_port}-{last_http}, "
              f"gate ports {settings.gate_port}-{last_gate}", flush=True)
        if embedded:
            print("  stores: " + " ".join(f"{k.upper()}={v}" for k, v in embedded.items()),
                  flush=True)

        while not stop.is_set():
            exits = {asyncio.create_task(i.process.wait()): i for i in instances}
            done, _ = await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task, instance in exits.items():
                task.cancel()
                if task in done and not stop.is_set():
                    print(f"xiaoqu: process {instance.index} exited with status "
                          f"{instance.process.returncode}; starting it again", file=sys.stderr,
                          flush=True)
                    await instance.relay
                    await asyncio.sleep(RESTART_AFTER)
                    await instance.start()
        codes = await asyncio.gather(*(i.stop() for i in instances))
    return max((c for c in codes if c > 0), default=0)
