"""The gate hub: the TCP server every gate bridge keeps one connection to.

Per connection: framing (gate_bridge.wire), the challenge-response handshake,
heartbeats, a per-bridge rate limit, dispatch by op. Sockets are bound with
Tornado's `netutil.bind_sockets` and served by an asyncio Protocol per
connection rather than Tornado's IOStream: an idle IOStream costs about three
times the memory of a bare protocol, and the hub is meant to hold tens of
thousands of idle bridges. Timers are not per connection either: one sweep
every quarter heartbeat closes unauthenticated sockets past the auth deadline,
slow partial frames past the read timeout and bridges silent for 3 heartbeats,
sends heartbeats, and refreshes presence in Redis in one pipeline.

Commands (remote opens, mode changes) are queued in Redis
(`gate:pending:<bridge>`, expiring with their ttl) until the bridge
acknowledges them, so whichever hub process holds the bridge, now or after a
reconnect, delivers them. The process that issued a command publishes
`gate:deliver`; the holder sends it and routes acknowledgements back on
`gate:acks:<issuer instance>`.

`python -m server.gate_hub --port N` runs a hub alone (tests kill it with SIGKILL).
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import socket
import ssl
import time
import uuid

import redis.exceptions
import tornado.netutil

from gate_bridge import protocol as p
from gate_bridge import wire
from models.bridges import CONFIG_CHANNEL, BridgeManager
from server.app import XiaoquApp
from server.settings import load_settings
from server.stores import connect_mongo, connect_redis, connect_redis_pubsub

log = logging.getLogger("xiaoqu.gate_hub")

HELLO, AUTH, READY, CLOSED = "hello", "auth", "ready", "closed"
MAX_STRIKES = 5  # undecodable frames tolerated before the socket is dropped
PENDING = "gate:pending:"
CONFIG_CACHE_SECONDS = 60.0  # revocations reach bridges within this even unannounced


@dataclasses.dataclass
class HubOptions:
    heartbeat: float = p.DEFAULT_HEARTBEAT
    auth_timeout: float = 5.0
    read_timeout: float = 10.0  # a frame begun must be finished within this
    max_frame: int = wire.MAX_FRAME
    rate: float = 50.0  # frames per second per bridge, sustained
    burst: float = 200.0
    command_ttl: float = p.DEFAULT_TTL
    ssl_context: ssl.SSLContext | None = None


class Connection(asyncio.Protocol):
    __slots__ = ("hub", "transport", "decoder", "codec", "state", "bridge", "creds", "nonce",
                 "server_nonce", "opened", "last_rx", "last_tx", "partial_since", "tokens",
                 "token_at", "strikes", "inbox", "worker", "config_version", "pushed_at",
                 "drift_alarm", "events_upto")

    def __init__(self, hub: "GateHub"):
        now = time.monotonic()
        self.hub = hub
        self.transport = None
        self.decoder = wire.Decoder(hub.options.max_frame)
        self.codec = "msgpack"
        self.state = HELLO
        self.bridge: str | None = None
        self.creds = None  # (key, bridge doc, gate doc) once hello named a known bridge
        self.nonce = self.server_nonce = None
        self.opened = self.last_rx = self.last_tx = now
        self.partial_since = None
        self.tokens, self.token_at = hub.options.burst, now
        self.strikes = 0
        self.inbox = self.worker = None  # created only while there is work
        self.config_version = None
        self.pushed_at = 0.0
        self.drift_alarm = False
        self.events_upto = 0  # highest seq acknowledged on this connection

    # -- transport callbacks ------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.hub.all.add(self)

    def connection_lost(self, exc) -> None:
        was_ready = self.state == READY
        self.state = CLOSED
        self.hub.all.discard(self)
        if was_ready:
            self.hub.lost(self)
        self.hub.changes.changed()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_rx = now
        try:
            payloads = self.decoder.feed(data)
        except wire.FrameTooLarge as exc:
            self.close("frame_too_large", str(exc))
            return
        self.partial_since = (self.partial_since or now) if self.decoder.partial else None
        for payload in payloads:
            if self.state == CLOSED:
                return
            if not self._take_token(now):
                continue
            try:
                msg, codec = wire.decode_payload(payload)
            except wire.BadPayload as exc:
                self.strike("bad_frame", str(exc))
                continue
            try:
                self.dispatch(msg, codec)
            except p.ProtocolError as exc:
                self.strike(exc.code, exc.message, msg.get("op"))
        self.hub.changes.changed()

    # -- helpers -------------------------------------------------------------------------

    def _take_token(self, now: float) -> bool:
        options = self.hub.options
        self.tokens = min(options.burst, self.tokens + (now - self.token_at) * options.rate)
        self.token_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        if self.tokens > -options.burst:  # answer once per frame for a while, then stay quiet
            self.send(p.error("rate_limited", "too many frames; slow down"))
        self.tokens -= 1
        if self.tokens < -2 * options.burst:
            self.close("rate_limited", "too many frames")
        return False

    def strike(self, code: str, text: str, ref_op: str | None = None) -> None:
        self.strikes += 1
        self.send(p.error(code, text, ref_op))
        if self.strikes >= MAX_STRIKES:
            self.close("too_many_errors", "too many bad frames")

    def send(self, msg: dict) -> None:
        if self.state != CLOSED and not self.transport.is_closing():
            self.transport.write(wire.encode(msg, self.codec))
            self.last_tx = time.monotonic()

    def close(self, code: str, text: str) -> None:
        """Say why (best effort) and drop the socket."""
        if self.state != CLOSED:
            self.send(p.error(code, text))
            self.transport.close()

    def enqueue(self, handler, msg: dict) -> None:
        """Run async handlers one at a time, in arrival order (events must stay ordered)."""
        if self.inbox is None:
            self.inbox = []
        self.inbox.append((handler, msg))
        if self.worker is None:
            self.worker = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.inbox and self.state != CLOSED:
                handler, msg = self.inbox.pop(0)
                try:
                    await handler(self, msg)
                except p.ProtocolError as exc:
                    self.strike(exc.code, exc.message, msg.get("op"))
                except Exception:
                    log.exception("gate hub: %s failed for %s", msg.get("op"), self.bridge)
                    self.send(p.error("server_error", f"{msg.get('op')} failed", msg.get("op")))
                self.hub.changes.changed()
        finally:
            self.inbox = self.worker = None

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, msg: dict, codec: str) -> None:
        op = msg["op"]
        hub = self.hub
        if self.state == HELLO:
            if op != p.HELLO:
                self.close("not_authenticated", "send hello first")
                return
            self.codec = codec
            self.state = AUTH
            self.enqueue(hub.on_hello, msg)
        elif self.state == AUTH:
            if op != p.AUTH:
                self.close("not_authenticated", "send auth")
                return
            self.enqueue(hub.on_auth, msg)
        elif op == p.HEARTBEAT:
            hub.on_heartbeat(self, msg)
        elif op == p.ACK:
            hub.on_ack(self, msg)
        elif op == p.SCAN:
            hub.spawn(hub.on_scan(self, msg))
        elif op in (p.EVENTS, p.CONFIG_ACK):
            self.enqueue(hub.on_events if op == p.EVENTS else hub.on_config_ack, msg)
        elif op == p.BYE:
            self.transport.close()
        elif op == p.ERROR:
            log.info("bridge %s reports %s: %s", self.bridge, msg.get("code"), msg.get("message"))
        else:
            raise p.ProtocolError("unknown_op", f"unknown op {op!r}")


class Waiter:
    """The issuer's view of one command: the acknowledgement levels seen so far."""

    def __init__(self):
        self.levels: list[dict] = []
        self.updated = asyncio.Event()

    def add(self, ack: dict) -> None:
        self.levels.append(ack)
        self.updated.set()

    @property
    def final(self) -> bool:
        return any(a["level"] in p.FINAL_LEVELS for a in self.levels)


class GateHub:
    def __init__(self, app, options: HubOptions | None = None, instance: str | None = None):
        self.app = app
        self.options = options or HubOptions()
        self.instance = instance or uuid.uuid4().hex[:12]
        # What the hub carries frames for: credentials and config, presence, and the gate
        # service (models/gate_access.py) for every application effect.
        self.bridges = app.bridges
        self.presence = app.gate_presence
        self.access = app.gate_access
        self.all: set[Connection] = set()
        self.connections: dict[str, Connection] = {}  # authenticated, by bridge id
        self.gates: dict[str, Connection] = {}  # the same, by gate id
        self.waiters: dict[str, Waiter] = {}  # commands this process issued
        self.routes: dict[str, str] = {}  # delivered command id -> issuing instance
        self.configs: dict[str, tuple[float, dict]] = {}  # community -> (expires, passes config)
        self.changes = wire.Changes()
        self.tasks: set[asyncio.Task] = set()  # short side effects (presence, alarms, scans)
        self.background: list[asyncio.Task] = []  # the sweeper and the pub/sub listener
        self.server: asyncio.Server | None = None
        self.port: int | None = None
        self.pubsub_redis = None
        self.subscribed = asyncio.Event()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self, port: int, address: str = "") -> int:
        sockets = tornado.netutil.bind_sockets(port, address or None, backlog=4096)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self), sock=sockets[0], ssl=self.options.ssl_context,
            ssl_handshake_timeout=self.options.auth_timeout if self.options.ssl_context else None)
        self.extra_servers = [await loop.create_server(lambda: Connection(self), sock=s,
                                                       ssl=self.options.ssl_context)
                              for s in sockets[1:]]
        self.port = sockets[0].getsockname()[1]
        self.pubsub_redis = connect_redis_pubsub(self.app.config.redis_url)
        self.background = [asyncio.create_task(self._sweep()), asyncio.create_task(self._listen())]
        await asyncio.wait_for(self.subscribed.wait(), 5)
        log.info("gate hub %s listening on port %d", self.instance, self.port)
        return self.port

    async def stop(self) -> None:
        for server in [self.server, *self.extra_servers]:
            server.close()
        workers = [c.worker for c in self.all if c.worker is not None]
        for conn in list(self.all):
            conn.transport.abort()
        tasks = [*workers, *self.tasks, *self.background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pubsub_redis.aclose()

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._effect_done)
        return task

    def _effect_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gate hub: background step failed", exc_info=task.exception())
        self.changes.changed()

    @property
    def idle(self) -> bool:
        """No side effect in flight and no connection with queued work (tests wait for this)."""
        return not self.tasks and all(c.worker is None for c in self.all)

    async def wait(self, predicate, timeout: float = 5.0) -> None:
        await self.changes.wait(predicate, timeout)

    async def _sweep(self) -> None:
        options = self.options
        tick = min(options.heartbeat / 4, 1.0)
        presence_at = 0.0
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in list(self.all):
                if conn.state != READY:
                    if now - conn.opened > options.auth_timeout:
                        conn.close("auth_timeout", "authenticate within the deadline")
                elif now - conn.last_rx > p.MISSED_HEARTBEATS * options.heartbeat:
                    conn.close("heartbeat_lost", "no frame for 3 heartbeats")
                elif now - conn.last_tx >= options.heartbeat:
                    conn.send(p.message(p.HEARTBEAT, t=self.app.clock.time()))
                if conn.partial_since is not None and now - conn.partial_since > options.read_timeout:
                    conn.close("read_timeout", "frame not completed in time")
            if now - presence_at >= options.heartbeat and self.connections:
                presence_at = now
                with contextlib.suppress(redis.exceptions.RedisError):
                    await self.presence.set_present(list(self.connections), self.instance,
                                                  p.MISSED_HEARTBEATS * options.heartbeat)

    # -- handshake -------------------------------------------------------------------------------

    async def on_hello(self, conn: Connection, msg: dict) -> None:
        try:
            version = p.negotiate(msg.get("v"))
            bridge, nonce = msg.get("bridge"), p.as_bytes(msg.get("nonce"), "nonce")
            if not isinstance(bridge, str) or not 0 < len(bridge) <= 64 or len(nonce) != p.NONCE_BYTES:
                raise p.ProtocolError("bad_hello", "bridge id and a 16-byte nonce are required")
        except p.ProtocolError as exc:
            conn.close(exc.code, exc.message)
            return
        conn.bridge, conn.nonce, conn.server_nonce = bridge, nonce, p.new_nonce()
        conn.creds = await self.bridges.credentials(bridge)
        conn.config_version = msg.get("config_version")
        # An unknown bridge gets a challenge too (with a proof from a random key), so
        # probing cannot tell which bridge ids exist.
        key = conn.creds[0] if conn.creds else p.new_nonce() * 2
        conn.send(p.message(p.CHALLENGE, v=version, nonce=conn.server_nonce,
                            proof=p.server_proof(key, bridge, nonce, conn.server_nonce)))

    async def on_auth(self, conn: Connection, msg: dict) -> None:
        try:
            given = p.as_bytes(msg.get("proof"), "proof")
        except p.ProtocolError:
            given = b""
        if conn.creds is None or not p.proof_ok(
                p.bridge_proof(conn.creds[0], conn.bridge, conn.nonce, conn.server_nonce), given):
            log.warning("gate hub: authentication failed for bridge %r", conn.bridge)
            conn.close("auth_failed", "authentication failed")
            return
        old = self.connections.get(conn.bridge)
        conn.state = READY
        self.connections[conn.bridge] = conn
        if old is not None:
            old.state = CLOSED  # replaced: its loss is not an offline transition
            old.transport.close()
        _, bridge_doc, gate = conn.creds
        self.gates[str(gate["_id"])] = conn
        # Presence first: once a bridge holds a welcome, every process sees it online.
        await self.presence.set_present([conn.bridge], self.instance,
                                      p.MISSED_HEARTBEATS * self.options.heartbeat)
        config = await self.config_for(gate)
        conn.send(p.message(p.WELCOME, time=self.app.clock.time(), heartbeat=self.options.heartbeat,
                            config_version=config["version"]))
        if conn.config_version != config["version"]:
            self.push_config(conn, config)
        await self._deliver_pending(conn)
        await self.app.redis.publish("gate:kick", json.dumps(
            {"bridge": conn.bridge, "instance": self.instance}))
        await self.access.bridge_status(bridge_doc, online=True)
        log.info("gate hub: bridge %s online (gate %s)", conn.bridge, gate.get("code"))

    def lost(self, conn: Connection) -> None:
        if self.connections.get(conn.bridge) is conn:
            self._forget(conn)
            self.spawn(self._gone(conn))

    def _forget(self, conn: Connection) -> None:
        del self.connections[conn.bridge]
        gate_id = str(conn.creds[2]["_id"])
        if self.gates.get(gate_id) is conn:
            del self.gates[gate_id]

    def held_gate(self, community_id: str, gate_id: str) -> dict | None:
        """The gate doc of a bridge connected here (refreshed by config_changed), so a remote
        open to it need not re-read the gate from the store; None for any other gate."""
        conn = self.gates.get(gate_id)
        gate = conn and conn.creds[2]
        return gate if gate and str(gate["community_id"]) == community_id else None

    async def _gone(self, conn: Connection) -> None:
        await self.presence.clear_present(conn.bridge, self.instance)
        await self.access.bridge_status(conn.creds[1], online=False)
        self.changes.changed()

    # -- heartbeats and config -----------------------------------------------------------------------

    def on_heartbeat(self, conn: Connection, msg: dict) -> None:
        drift = msg.get("drift")
        if isinstance(drift, (int, float)):
            too_far = abs(drift) > p.MAX_DRIFT
            if too_far and not conn.drift_alarm:
                self.spawn(self.access.clock_drift(conn.creds[1], drift))
            conn.drift_alarm = too_far
        version = msg.get("config_version")
        if (version != conn.config_version and time.monotonic() - conn.pushed_at
                > 2 * self.options.heartbeat):
            self.spawn(self._resync(conn))

    async def _resync(self, conn: Connection) -> None:
        self.push_config(conn, await self.config_for(conn.creds[2]))

    async def config_for(self, gate: dict) -> dict:
        community = str(gate["community_id"])
        cached = self.configs.get(community)
        if cached is None or cached[0] < time.monotonic():
            base = await self.bridges.community_config(community)
            cached = self.configs[community] = (time.monotonic() + CONFIG_CACHE_SECONDS, base)
        return BridgeManager.bridge_config(gate, cached[1])

    def push_config(self, conn: Connection, config: dict) -> None:
        conn.pushed_at = time.monotonic()
        conn.send(p.message(p.CONFIG, **config))

    async def on_config_ack(self, conn: Connection, msg: dict) -> None:
        conn.config_version = msg.get("version")

    async def config_changed(self, community_id: str) -> None:
        """Re-read the gates of a community and push changed configs to their bridges."""
        self.configs.pop(community_id, None)
        for conn in list(self.connections.values()):
            gate = conn.creds[2]
            if str(gate["community_id"]) == community_id:
                fresh = await self.app.db.gates.find_one({"_id": gate["_id"]})
                conn.creds = (conn.creds[0], conn.creds[1], fresh or gate)
                config = await self.config_for(conn.creds[2])
                if config["version"] != conn.config_version:
                    self.push_config(conn, config)

    # -- scans ----------------------------------------------------------------------------------------

    async def on_scan(self, conn: Connection, msg: dict) -> None:
        try:
            frames = await self.access.scan(conn.creds[2], msg, self.options.command_ttl)
        except p.ProtocolError as exc:
            conn.strike(exc.code, exc.message, p.SCAN)
            return
        except Exception:
            # The bridge decides offline when no answer comes within its budget.
            log.exception("gate hub: scan check failed for %s", conn.bridge)
            conn.send(p.error("scan_failed", "could not check the code", p.SCAN))
            return
        for frame in frames:
            conn.send(frame)
        self.changes.changed()

    # -- events ------------------------------------------------------------------------------------------

    async def on_events(self, conn: Connection, msg: dict) -> None:
        items = p.event_items(msg)
        upto = items[-1]["seq"]
        # By the meaning of events_ack, events at or below an upto this connection was sent
        # are stored and their alarms raised: a bridge re-sending them while acks are in
        # flight costs only this filter, not a rejected insert per event.
        items = [item for item in items if item["seq"] > conn.events_upto]
        await self.access.bridge_events(conn.creds[1], conn.creds[2], items)
        conn.events_upto = max(conn.events_upto, upto)
        conn.send(p.message(p.EVENTS_ACK, upto=upto))

    # -- commands ---------------------------------------------------------------------------------------------

    async def send_command(self, bridge: str, cmd: dict, wait: float) -> list[dict] | None:
        """Queue the command, have the bridge's holder send it and collect acknowledgements
        until a final one or `wait`; None when the bridge is offline. (The gate service's
        transport for remote opens: GateAccess.remote_open.)"""
        # A bridge connected to this process is online: Redis is asked only about others.
        if bridge not in self.connections and await self.presence.owner(bridge) is None:
            return None
        waiter = self.waiters[cmd["id"]] = Waiter()
        try:
            key = PENDING + bridge
            async with self.app.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, cmd["id"], json.dumps({"cmd": cmd, "origin": self.instance}))
                pipe.pexpire(key, int(cmd["ttl"] * 1000) + 1000)
                await pipe.execute()
            conn = self.connections.get(bridge)
            if conn is not None:  # no pub/sub hop to ourselves
                self._deliver(conn, cmd, self.instance)
            else:
                await self.app.redis.publish("gate:deliver",
                                             json.dumps({"bridge": bridge, "id": cmd["id"]}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    while not waiter.final:
                        waiter.updated.clear()
                        await waiter.updated.wait()
        finally:
            del self.waiters[cmd["id"]]
        return waiter.levels

    def _deliver(self, conn: Connection, cmd: dict, origin: str) -> None:
        self.routes[cmd["id"]] = origin
        conn.send(cmd)

    async def _deliver_pending(self, conn: Connection) -> None:
        key = PENDING + conn.bridge
        now = self.app.clock.time()
        for command_id, raw in (await self.app.redis.hgetall(key)).items():
            entry = json.loads(raw)
            if p.expired(entry["cmd"]["issued_at"], entry["cmd"]["ttl"], now):
                await self.app.redis.hdel(key, command_id)  # too late to act on: never sent
            else:
                self._deliver(conn, entry["cmd"], entry["origin"])

    def on_ack(self, conn: Connection, msg: dict) -> None:
        command_id, level = msg.get("id"), msg.get("level")
        if level not in p.LEVEL_RANK or not isinstance(command_id, str):
            raise p.ProtocolError("bad_field", "ack needs id and a known level")
        origin = self.routes.get(command_id)
        if origin is None:
            return  # an open that answered a scan: its outcome shows in the door events
        ack = {"id": command_id, "level": level, **({"reason": msg["reason"]} if "reason" in msg else {})}
        if level == p.RECEIVED or level in p.FINAL_LEVELS:
            self.spawn(self.app.redis.hdel(PENDING + conn.bridge, command_id))
        if level in p.FINAL_LEVELS:
            del self.routes[command_id]
        if origin == self.instance:
            self._ack_arrived(ack)
        else:
            self.spawn(self.app.redis.publish(f"gate:acks:{origin}", json.dumps(ack)))

    def _ack_arrived(self, ack: dict) -> None:
        waiter = self.waiters.get(ack["id"])
        if waiter is not None:
            waiter.add(ack)

    # -- cross-process messages ----------------------------------------------------------------------------------

    async def _listen(self) -> None:
        channels = ("gate:deliver", f"gate:acks:{self.instance}", "gate:kick", CONFIG_CHANNEL)
        while True:
            try:
                async with self.pubsub_redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            await self._on_message(message["channel"], json.loads(message["data"]))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                log.warning("gate hub: pub/sub connection lost; resubscribing")
                await asyncio.sleep(1.0)

    async def _on_message(self, channel: str, data: dict) -> None:
        if channel == "gate:deliver":
            conn = self.connections.get(data["bridge"])
            raw = conn and await self.app.redis.hget(PENDING + data["bridge"], data["id"])
            if raw:
                entry = json.loads(raw)
                self._deliver(conn, entry["cmd"], entry["origin"])
        elif channel == "gate:kick":
            conn = self.connections.get(data["bridge"])
            if conn is not None and data["instance"] != self.instance:
                self._forget(conn)
                conn.state = CLOSED  # the bridge is online elsewhere
                conn.transport.close()
        elif channel == CONFIG_CHANNEL:
            await self.config_changed(data["community_id"])
        else:
            self._ack_arrived(data)


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def start_gate_hub(app, port: int | None = None, address: str = "") -> GateHub:
    """Start a hub for the app on GATE_PORT (or `port`) and attach it as `app.gate_hub`."""
    settings = app.config
    hub = GateHub(app, HubOptions(heartbeat=settings.gate_heartbeat,
                                  ssl_context=ssl_context(settings.gate_tls_cert, settings.gate_tls_key)))
    await hub.start(settings.gate_port if port is None else port, address)
    app.gate_hub = hub
    return hub


async def _serve(port: int, address: str) -> None:
    """A hub alone, on the web app's settings (for tests and for running hubs separately)."""
    settings = load_settings()
    app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri), connect_redis(settings.redis_url))
    await app.startup()
    hub = await start_gate_hub(app, port, address)
    print("READY", hub.port, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await hub.stop()
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m server.gate_hub")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="", help="bind address (default: all)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.address))
