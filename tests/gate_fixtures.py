"""Gate test helpers: a hub on a free port with the `app` fixture, a raw protocol peer,
a real Bridge wired to simulated hardware, and a hub in a subprocess (to SIGKILL).

Import the fixtures into a test module with `from tests.gate_fixtures import *`.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable

import pytest_asyncio

from gate_bridge import protocol as p
from gate_bridge import wire
from gate_bridge.bridge import Bridge
from gate_bridge.session import BridgeSession, Closed, Limits
from scripts.simulate_bridges import make_bridge
from server.gate_hub import GateHub, HubOptions

HEARTBEAT = 0.2  # seconds: for the tests about lost heartbeats (hub_with), done in a second

# How long a remote open waits for the door's last level: a hung bridge's deadline only (the
# test client gives up at 20 s), an answer comes as soon as the door's last level does.
OPEN_WAIT = 15.0

__all__ = ["hub", "hub_with", "peers", "RawPeer", "SimBridge", "start_sim_bridge", "HubProcess",
           "HEARTBEAT", "OPEN_WAIT"]


@pytest_asyncio.fixture
async def hub(app):
    """A hub on the default timings: a raw peer sends no heartbeats, and a loaded machine's
    pause must not end a session (heartbeat_lost, auth_timeout) in a test about something else."""
    async with _started(app, HubOptions()) as gate_hub:
        yield gate_hub


@pytest_asyncio.fixture
async def hub_with(app):
    """`hub, peers = await hub_with(heartbeat=HEARTBEAT)`: a hub with the one timing a test is
    about made short, every other at its default (so only the deadline under test can fire)."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(**options) -> tuple[GateHub, Callable]:
            gate_hub = await stack.enter_async_context(_started(app, HubOptions(**options)))
            return gate_hub, await stack.enter_async_context(_connector(gate_hub))
        yield start


@contextlib.asynccontextmanager
async def _started(app, options: HubOptions):
    gate_hub = GateHub(app, options)
    await gate_hub.start(0, "127.0.0.1")
    app.gate_hub = gate_hub
    try:
        yield gate_hub
    finally:
        await gate_hub.stop()


@pytest_asyncio.fixture
async def peers(hub):
    """`await peers(codec="msgpack")` -> a RawPeer connected to the hub; all closed afterwards."""
    async with _connector(hub) as connect:
        yield connect


@contextlib.asynccontextmanager
async def _connector(hub):
    opened = []

    async def connect(codec: str = "msgpack") -> "RawPeer":
        opened.append(await RawPeer.connect(hub.port, codec))
        return opened[-1]
    try:
        yield connect
    finally:
        for peer in opened:
            peer.writer.close()
            with contextlib.suppress(OSError):
                await peer.writer.wait_closed()


class RawPeer:
    """Speaks the wire protocol by hand, to test the hub's reactions frame by frame."""

    def __init__(self, reader, writer, codec="msgpack"):
        self.reader, self.writer, self.codec = reader, writer, codec

    @classmethod
    async def connect(cls, port: int, codec: str = "msgpack") -> "RawPeer":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, codec)

    def send(self, msg: dict) -> None:
        self.writer.write(wire.encode(msg, self.codec))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = wire.WAIT) -> dict:
        msg, _ = await asyncio.wait_for(wire.read_frame(self.reader), timeout)
        return msg

    async def expect(self, op: str, timeout: float = wire.WAIT, **match) -> dict:
        """The next frame with this op (heartbeats and config pushes in between are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg["op"] == op and all(msg.get(k) == v for k, v in match.items()):
                    return msg

    async def closed(self, timeout: float = wire.WAIT) -> list[dict]:
        """Wait for the hub to close the socket; returns the frames received before."""
        frames = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    frames.append(await self.recv(timeout))
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    return frames

    async def handshake(self, bridge_id: str, secret: str, **hello) -> tuple[dict, dict]:
        """(challenge, welcome-or-error) after the bridge's handshake with this secret.

        Run by the bridge's own session; with a wrong secret the session would hang up at the
        server's proof, so this peer sends the proof it made anyway, to see the hub refuse it.
        """
        session = BridgeSession(Limits(), bridge_id, p.derive_key(secret), self.codec)
        session.hello(firmware="raw", caps=[], last_seq=0, **hello)
        self.send_raw(session.data_to_send())
        challenge = await self.expect(p.CHALLENGE)
        [event] = session.receive_data(wire.encode(challenge, self.codec))
        if isinstance(event, Closed):
            assert event.code == "server_auth_failed", event
            self.send(p.message(p.AUTH, proof=session.proof()))
        else:
            self.send_raw(session.data_to_send())
        return challenge, await self.recv()

    def close(self) -> None:
        self.writer.close()


class SimBridge:
    """A real Bridge on simulated hardware, running as a task."""

    def __init__(self, bridge: Bridge, task: asyncio.Task):
        self.bridge, self.task = bridge, task
        self.relay, self.door, self.scanner = bridge.relay, bridge.door, bridge.scanner

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.bridge.store.close()


async def start_sim_bridge(tmp_path, port: int, bridge_id: str, secret: str, *, auto_door=True,
                           **options) -> SimBridge:
    options = {"backoff_base": 0.05, "backoff_max": 0.2, "door_open_timeout": 0.5,
               "connect_timeout": 2.0, **options}
    bridge = make_bridge(bridge_id, secret, "127.0.0.1", port, tmp_path,
                         door={"auto": auto_door, "open_after": 0.01, "close_after": 0.05}, **options)
    return SimBridge(bridge, asyncio.create_task(bridge.run()))


class HubProcess:
    """`python -m server.gate_hub` in a subprocess on the test's stores (SIGKILL-able)."""

    def __init__(self, settings, port: int = 0, heartbeat: float = p.DEFAULT_HEARTBEAT):
        env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
               "REDIS_URL": settings.redis_url, "XIAOQU_DATA_DIR": str(settings.data_dir),
               "GATE_HEARTBEAT": str(heartbeat),
               "GATE_SECRET_KEY": settings.gate_secret_key.get_secret_value(),
               "JWT_SECRET": settings.jwt_secret.get_secret_value(),
               "WECHAT_BASE_URL": settings.wechat_base_url}
        self.proc = subprocess.Popen([sys.executable, "-m", "server.gate_hub", "--port", str(port),
                                      "--address", "127.0.0.1"],
                                     env=env, stdout=subprocess.PIPE, text=True)
        self.port = None

    async def ready(self) -> int:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        assert line.startswith("READY"), f"hub did not start: {line!r}"
        self.port = int(line.split()[1])
        return self.port

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no goodbye, no flush
        self.proc.wait(10)
        self.proc.stdout.close()
