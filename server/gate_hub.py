"""The gate hub: the TCP server every gate bridge keeps one connection to.

Transport only. Per connection it moves bytes through a ServerSession
(gate_bridge/session.py: framing, the challenge-response handshake, heartbeats,
rate and bad-frame limits, per-op checks) and hands the application frames the
session yields to the gate service (models/gate_access.py), bridges
(models/bridges.py: credentials, config) and presence. Sockets are bound with
Tornado's `netutil.bind_sockets` and served by an asyncio Protocol per
connection rather than Tornado's IOStream: an idle IOStream costs about three
times the memory of a bare protocol, and the hub is meant to hold tens of
thousands of idle bridges. Timers are not per connection either: one sweep
every quarter heartbeat runs every session's timers (handshake deadline, read
timeout, heartbeat loss, heartbeats due); beside it, the instance renews its
lease and refreshes presence in Redis in one pipeline.

Cross-process (Redis pub/sub): `gate:used` (a code's use: a `used` frame to the
community's bridges at once), `gate:config` (re-push changed configs),
`gate:end_sessions` (re-keyed or disabled bridge: bye), `gate:kick` (the bridge
connected to another process: bye "replaced"), `gate:offline` (a dead instance's
bridge was declared offline: opens waiting on it end now).

Instances that die: each instance holds a short lease in Redis (half a heartbeat)
and lists the bridges it holds (models/gate_presence.py). One presence watcher
across instances (a models.leases job) finds holders whose lease lapsed and
declares their bridges offline — event, alarm, gate list — within one heartbeat.

Commands (remote opens) are queued in Redis
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
import math
import signal
import socket
import ssl
import time
import uuid

import redis.exceptions
import tornado.netutil

from gate_bridge import logs, wire
from gate_bridge import protocol as p
from gate_bridge.decision import UseClaim
from gate_bridge.session import (HEARTBEAT_DUE, Authenticated, Hello, Limits, Received,
                                 ServerSession)
from models.bridges import CONFIG_CHANNEL, SESSIONS_CHANNEL, USED_CHANNEL, BridgeManager
from models.leases import LeasedJob
from server import metrics
from server.app import XiaoquApp
from server.settings import load_settings
from server.stores import connect_mongo, connect_redis, connect_redis_pubsub

log = logging.getLogger("xiaoqu.gate_hub")

NOW, ORDERED, CONCURRENT = "now", "ordered", "concurrent"  # how an op's handler runs
PENDING = "gate:pending:"
OFFLINE_CHANNEL = "gate:offline"  # a bridge whose hub died was declared offline: fail its opens
WATCHER = "gate_presence_watcher"  # the lease of the one watcher across instances
CONFIG_CACHE_SECONDS = 60.0  # revocations reach bridges within this even unannounced
# Bridge credentials (the opened key, bridge and gate docs) kept per process: a reconnect
# storm must not read and open thousands of sealed keys from the store. Dropped when a key
# changes (gate:end_sessions, every process), when the community's config changes, when
# the pub/sub subscription is made again (announcements may have been missed), and after
# this long at the latest.
CREDENTIALS_CACHE_SECONDS = CONFIG_CACHE_SECONDS
MAX_CACHED_CREDENTIALS = 100_000
MAX_BUSY_RETRY = 30.0  # the longest retry_after a `busy` names
# The admission window's start and floor (it grows while handshakes are fast): a few at
# once always, so a bridge or two arriving is never told `busy` however slow the store.
INITIAL_HANDSHAKES = 4


@dataclasses.dataclass
class HubOptions:
    heartbeat: float = p.DEFAULT_HEARTBEAT
    auth_timeout: float = 5.0
    read_timeout: float = 10.0  # a frame begun must be finished within this
    max_frame: int = wire.MAX_FRAME
    rate: float = 50.0  # frames per second per bridge, sustained
    burst: float = 200.0
    command_ttl: float = p.DEFAULT_TTL
    # Handshakes (hello to welcome and its follow-up) in progress at once; a hello beyond
    # that is answered error{busy, retry_after} at once, before any store is read.
    max_handshakes: int = 64
    busy_retry: float = 1.0  # the shortest retry_after a busy refusal names (seconds)
    ssl_context: ssl.SSLContext | None = None
    used_per_frame: int = 500  # used codes per config/used frame: ~25 KB, inside the limit
    # The instance's own lease (and the watcher's): None = half a heartbeat, at least 1 s,
    # so a dead instance's bridges are declared offline within one heartbeat.
    instance_lease: float | None = None

    @property
    def lease(self) -> float:
        return self.instance_lease or max(self.heartbeat / 2, 1.0)

    def limits(self) -> Limits:
        return Limits(heartbeat=self.heartbeat, handshake_timeout=self.auth_timeout,
                      read_timeout=self.read_timeout, max_frame=self.max_frame, rate=self.rate,
                      burst=self.burst)


class Connection(asyncio.Protocol):
    """Moves bytes between one socket and its ServerSession; what the hub knows of the bridge."""

    __slots__ = ("hub", "transport", "session", "creds", "key_generation", "inbox", "worker",
                 "config_version", "pushed_at", "drift_alarm", "events_upto", "events_sent")

    def __init__(self, hub: "GateHub"):
        self.hub = hub
        self.transport = None
        self.session = ServerSession(hub.limits)
        self.creds = None  # (key, bridge doc, gate doc) once hello named a known bridge
        self.key_generation = 0  # the hub's count of the bridge's key changes when read
        self.inbox = self.worker = None  # created only while there is work
        self.config_version = None
        self.pushed_at = 0.0
        self.drift_alarm = False
        # Events: the highest seq acknowledged on this connection (every event up to it
        # stored; None until the first batch says where it starts) and the last seq received.
        self.events_upto = self.events_sent = None

    @property
    def bridge(self) -> str | None:
        return self.session.bridge

    # -- transport callbacks ------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.hub.all.add(self)

    def connection_lost(self, exc) -> None:
        self.session.receive_data(b"")  # the session ends here if it had not already
        self.hub.all.discard(self)
        if self.worker is None:  # else its handshake step still runs: the slot is freed after
            self.hub.handshake_done(self)
        self.hub.lost(self)
        self.hub.changes.changed()

    def data_received(self, data: bytes) -> None:
        for event in self.session.receive_data(data):
            self.hub.on_event(self, event)
        self.flush()
        self.hub.changes.changed()

    # -- helpers -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the session has to say; close the socket once the session is over."""
        if self.transport.is_closing():
            return
        data = self.session.data_to_send()
        if data:
            self.transport.write(data)
        if self.session.closed:
            self.transport.close()

    def send(self, msg: dict) -> None:
        self.session.send(msg)
        self.flush()

    def close(self, code: str, text: str) -> None:
        """Say why (error frame) and drop the socket."""
        self.session.close(code, text)
        self.flush()

    def bye(self, reason: str) -> None:
        """End the session on purpose, naming the reason in a bye frame."""
        self.session.bye(reason)
        self.flush()

    def enqueue(self, handler, item) -> None:
        """Run async handlers one at a time, in arrival order (events must stay ordered)."""
        if self.inbox is None:
            self.inbox = []
        self.inbox.append((handler, item))
        if self.worker is None:
            self.worker = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.inbox and not self.session.closed:
                handler, item = self.inbox.pop(0)
                try:
                    await handler(self, item)
                except p.ProtocolError as exc:
                    self.session.bad_frame(exc.code, exc.message, getattr(item, "op", None))
                except Exception:
                    op = getattr(item, "op", type(item).__name__)
                    log.exception("gate hub: %s failed for %s", op, self.bridge)
                    self.session.send(p.error("server_error", f"{op} failed", op))
                self.flush()
                self.hub.changes.changed()
        finally:
            self.inbox = self.worker = None
            if self.session.closed:  # lost (or refused) during its handshake: the slot is free
                self.hub.handshake_done(self)


class Waiter:
    """The issuer's view of one command: the acknowledgement levels seen so far."""

    def __init__(self, bridge: str, on_ack=None):
        self.bridge = bridge
        self.levels: list[dict] = []
        self.updated = asyncio.Event()
        self.on_ack = on_ack
        self.offline = False  # the bridge was declared offline (its hub died)

    def add(self, ack: dict) -> None:
        self.levels.append(ack)
        self.updated.set()
        if self.on_ack is not None:
            self.on_ack(ack)

    @property
    def final(self) -> bool:
        return any(a["level"] in p.FINAL_LEVELS for a in self.levels)


class GateHub:
    def __init__(self, app, options: HubOptions | None = None, instance: str | None = None):
        self.app = app
        self.options = options or HubOptions()
        self.limits = self.options.limits()
        self.instance = instance or uuid.uuid4().hex[:12]
        self.lapses = 0  # times our lease ran out while we were alive after all
        self.renewing_since = 0.0  # start of the current run of successful lease renewals
        self.declared_offline = 0  # bridges of dead instances this one declared offline
        self.watcher = LeasedJob(app.redis, WATCHER, self._watch, interval=self.options.lease / 4,
                                 ttl=self.options.lease, instance=self.instance)
        # What the hub carries frames for: credentials and config, presence, and the gate
        # service (models/gate_access.py) for every application effect.
        self.bridges = app.bridges
        self.presence = app.gate_presence
        self.access = app.gate_access
        self.all: set[Connection] = set()
        self.connections: dict[str, Connection] = {}  # authenticated, by bridge id
        self.gates: dict[str, Connection] = {}  # the same, by gate id
        self.communities: dict[str, set[Connection]] = {}  # welcomed, by community id
        self.key_changes: dict[str, int] = {}  # bridge -> how often its key changed
        self.waiters: dict[str, Waiter] = {}  # commands this process issued
        # delivered command id -> (issuing instance, the connection it went out on)
        self.delivered: dict[str, tuple[str, Connection]] = {}
        self.configs: dict[str, tuple[float, dict]] = {}  # community -> (expires, passes config)
        # community -> the one read of its config in flight: a storm of its bridges waits for
        # it rather than each reading the same config again
        self.config_reads: dict[str, asyncio.Task] = {}
        self.credentials: dict[str, tuple[float, tuple]] = {}  # bridge -> (expires, creds)
        # Admission: connections between hello and the end of on_auth (-> when admitted);
        # refused hellos lately (decaying, time constant 1 s) and a handshake's usual length
        # make the retry_after of the next refusal.
        self.handshaking: dict[Connection, float] = {}
        self.refusals, self.refused_at = 0.0, 0.0
        self.handshake_seconds = 0.05
        self.window = float(min(INITIAL_HANDSHAKES, self.options.max_handshakes))
        self.busy_refused = 0
        self.changes = wire.Changes()
        self.tasks: set[asyncio.Task] = set()  # short side effects (presence, alarms, scans)
        self.background: list[asyncio.Task] = []  # the sweeper and the pub/sub listener
        self.server: asyncio.Server | None = None
        self.port: int | None = None
        self.pubsub_redis = None
        self.subscribed = asyncio.Event()
        # Application frames by op: run at once, one at a time per connection in arrival
        # order (events must stay ordered), or concurrently (scans answer independently).
        self.handlers = {p.HEARTBEAT: (NOW, self.on_heartbeat), p.ACK: (NOW, self.on_ack),
                         p.ERROR: (NOW, self.on_error), p.SCAN: (CONCURRENT, self.on_scan),
                         p.EVENTS: (ORDERED, self.on_events),
                         p.CONFIG_ACK: (ORDERED, self.on_config_ack)}

    def on_event(self, conn: Connection, event) -> None:
        """What the connection's session made of the bytes just received."""
        if type(event) is Received:
            how, handler = self.handlers[event.op]
            if how is NOW:
                handler(conn, event.message)
            elif how is ORDERED:
                conn.enqueue(handler, event.message)
            else:
                self.spawn(handler(conn, event.message))
        elif type(event) is Hello:
            if len(self.handshaking) >= self.admitting():
                conn.session.busy(self._retry_after())
                self.busy_refused += 1
                metrics.HANDSHAKES_BUSY.inc()
                return
            self.handshaking[conn] = time.monotonic()
            conn.enqueue(self.on_hello, event)
        elif type(event) is Authenticated:
            conn.enqueue(self.on_auth, event)

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
        self.access.send = self.send_command  # the outbox asks bridges through it
        self.pubsub_redis = connect_redis_pubsub(self.app.config.redis_url)
        await self.presence.register(self.instance, self.options.lease)
        self.renewing_since = time.monotonic()
        self.background = [asyncio.create_task(self._sweep()), asyncio.create_task(self._listen())]
        self.stopping = asyncio.Event()
        self.lease_keeper = asyncio.create_task(self._keep_lease())
        await asyncio.wait_for(self.subscribed.wait(), 5)
        self.watcher.start()
        log.info("gate hub %s listening on port %d", self.instance, self.port)
        return self.port

    def stop_accepting(self) -> None:
        if self.access.send == self.send_command:
            self.access.send = None
        for server in [self.server, *self.extra_servers]:
            server.close()

    async def stop(self, drain: float = 5.0) -> None:
        """Stop accepting; let each session's queued work (events being stored, acks) finish
        for up to `drain` seconds; then bye{shutdown} to every bridge — it reconnects, to
        another instance behind a balancer — and stop what is left."""
        # The lease keeper ends between two Redis calls, not cancelled inside one (which
        # leaves its connection neither closed nor back in the pool).
        self.stopping.set()
        await self.lease_keeper
        await self.watcher.stop()
        self.stop_accepting()
        workers = [c.worker for c in self.all if c.worker is not None]
        if workers:
            await asyncio.wait(workers, timeout=drain)
        for conn in list(self.all):
            conn.bye("shutdown")  # written, then the socket closes (Connection.flush)
        # Side effects in flight (the bridges' offline transitions among them, once their
        # sockets report closed) finish too: cancelled inside a store call, they would leave
        # its connection unclosed.
        deadline = time.monotonic() + drain
        await asyncio.sleep(0)
        while self.tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(list(self.tasks), timeout=left)
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

    async def wait(self, predicate, timeout: float = wire.WAIT) -> None:
        await self.changes.wait(predicate, timeout)

    async def _sweep(self) -> None:
        options = self.options
        tick = min(options.heartbeat / 4, 1.0)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in list(self.all):
                for event in conn.session.tick(now):
                    if event is HEARTBEAT_DUE:
                        conn.session.send(p.message(p.HEARTBEAT, t=self.app.clock.time()))
                conn.flush()

    # -- handshake -------------------------------------------------------------------------------

    def admitting(self) -> int:
        """Handshakes taken at once: a window that starts small, grows by one with each
        handshake welcomed within a quarter of the deadline and halves with each slower one
        (timed out included), between INITIAL_HANDSHAKES and `max_handshakes`. On a slow
        store more at once would only queue there and miss the deadline together; a cold
        start must not send the whole limit at once to a store not measured yet."""
        return int(self.window)

    def _retry_after(self) -> float:
        """When a refused bridge should come back: the bridges refused lately, spread over
        the time this hub takes to hand each its turn (`admitting()` at a time)."""
        now = time.monotonic()
        self.refusals = self.refusals * math.exp(self.refused_at - now) + 1
        self.refused_at = now
        spread = self.refusals * self.handshake_seconds / self.admitting()
        return min(MAX_BUSY_RETRY, max(self.options.busy_retry, spread))

    def handshake_done(self, conn: Connection) -> None:
        """Its slot is free. Handshakes that timed out or were lost count too, with the time
        they took: the limit must come down when they start missing the deadline."""
        started = self.handshaking.pop(conn, None)
        if started is None:
            return
        took = time.monotonic() - started
        self.handshake_seconds += 0.2 * (took - self.handshake_seconds)
        if took > self.options.auth_timeout / 4:  # slow, or timed out: the store is behind
            self.window = max(float(min(INITIAL_HANDSHAKES, self.options.max_handshakes)),
                              self.window / 2)
        elif conn.session.ready:  # (a fast refusal or hang-up says nothing about the store)
            self.window = min(self.options.max_handshakes, self.window + 1)

    async def on_hello(self, conn: Connection, hello: Hello) -> None:
        bridge = hello.bridge
        while True:  # a key read while the bridge was being re-keyed is read again
            conn.key_generation = self.key_changes.get(bridge, 0)
            cached = self.credentials.get(bridge)
            if cached is not None and cached[0] > time.monotonic():
                conn.creds = cached[1]
                break
            conn.creds = await self.bridges.credentials(bridge)
            if conn.key_generation == self.key_changes.get(bridge, 0):
                if conn.creds is not None:  # unknown ids are not kept: they cost no key
                    self._remember_credentials(bridge, conn.creds)
                break
        conn.config_version = hello.message.get("config_version")
        conn.session.challenge(conn.creds[0] if conn.creds else None)

    def _remember_credentials(self, bridge: str, creds: tuple) -> None:
        self.credentials.pop(bridge, None)  # re-inserted last: the oldest go first
        self.credentials[bridge] = (time.monotonic() + CREDENTIALS_CACHE_SECONDS, creds)
        while len(self.credentials) > MAX_CACHED_CREDENTIALS:
            del self.credentials[next(iter(self.credentials))]

    async def on_auth(self, conn: Connection, event: Authenticated) -> None:
        try:
            await self._authenticated(conn)
        finally:
            self.handshake_done(conn)

    async def _authenticated(self, conn: Connection) -> None:
        _, bridge_doc, gate = conn.creds
        # Presence first: once a bridge holds a welcome, every process sees it online.
        await self.presence.set_present([conn.bridge], self.instance,
                                      p.MISSED_HEARTBEATS * self.options.heartbeat)
        config = await self.config_for(gate)
        if conn.key_generation != self.key_changes.get(conn.bridge, 0):
            conn.close("auth_failed", "authentication failed")  # proved a key since replaced
        if conn.session.closed:  # that, or gone during the lookups
            self.spawn(self.presence.clear_present(conn.bridge, self.instance))
            return
        conn.session.welcome(self.app.clock.time(), config["version"])
        # Only now may anything else be sent to it (commands, used codes): the bridge expects
        # the welcome first. A command queued meanwhile is in Redis: _deliver_pending sends it.
        old = self.connections.get(conn.bridge)
        self.connections[conn.bridge] = conn
        if old is not None:  # replaced: its loss is not an offline transition
            self._forget(old)
            old.bye("replaced")
        self.gates[str(gate["_id"])] = conn
        # From here on every use in the community reaches this bridge as a `used` delta, and
        # the used codes read next cover every use before: nothing falls in between.
        self.communities.setdefault(str(gate["community_id"]), set()).add(conn)
        metrics.BRIDGES_CONNECTED.labels(str(gate["community_id"])).inc()
        nonces = await self.bridges.used_codes(str(gate["community_id"]))
        if conn.config_version != config["version"]:
            self.push_config(conn, config, nonces)
        else:
            self.send_used(conn, nonces)
        await self._deliver_pending(conn)
        await self.app.redis.publish("gate:kick", json.dumps(
            {"bridge": conn.bridge, "instance": self.instance}))
        await self.access.bridge_status(bridge_doc, online=True)
        log.info("gate hub: bridge %s online (gate %s)", conn.bridge, gate.get("code"))

    def lost(self, conn: Connection) -> None:
        if conn.bridge is not None and self.connections.get(conn.bridge) is conn:
            self._forget(conn)
            self.spawn(self._gone(conn))

    def _forget(self, conn: Connection) -> None:
        """No longer this process's connection for its bridge (lost, replaced or kicked)."""
        if self.connections.get(conn.bridge) is conn:
            del self.connections[conn.bridge]
        gate_id = str(conn.creds[2]["_id"])
        if self.gates.get(gate_id) is conn:
            del self.gates[gate_id]
        community = self.communities.get(str(conn.creds[2]["community_id"]))
        if community is not None and conn in community:
            community.discard(conn)
            metrics.BRIDGES_CONNECTED.labels(str(conn.creds[2]["community_id"])).dec()
        # Commands delivered on it can only be acknowledged by the bridge's next session.
        for command_id in [c for c, (_, on) in self.delivered.items() if on is conn]:
            del self.delivered[command_id]

    def end_sessions(self, bridge: str, reason: str) -> None:
        """The bridge's key changed or was deleted: close its session here with bye{reason};
        a handshake in progress with the key read before fails at its auth."""
        self.key_changes[bridge] = self.key_changes.get(bridge, 0) + 1
        self.credentials.pop(bridge, None)
        conn = self.connections.get(bridge)
        if conn is not None:
            self._forget(conn)
            self.spawn(self._gone(conn))
            conn.bye(reason)

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
        gate = conn.creds[2]
        self.push_config(conn, await self.config_for(gate),
                         await self.bridges.used_codes(str(gate["community_id"])))

    async def config_for(self, gate: dict) -> dict:
        """The gate's config without the used codes, which are never cached (a push carries
        them as read at that moment) and not part of the version (deltas keep them current)."""
        community = str(gate["community_id"])
        cached = self.configs.get(community)
        if cached is not None and cached[0] >= time.monotonic():
            return BridgeManager.bridge_config(gate, cached[1])
        reading = self.config_reads.get(community)
        if reading is None:
            reading = self.config_reads[community] = self.spawn(self._read_config(community))
        return BridgeManager.bridge_config(gate, await asyncio.shield(reading))

    async def _read_config(self, community: str) -> dict:
        try:
            base = await self.bridges.community_config(community)
        finally:
            current = self.config_reads.get(community) is asyncio.current_task()
            if current:
                del self.config_reads[community]
        if current:  # not superseded by a change meanwhile (config_changed): keep it
            self.configs[community] = (time.monotonic() + CONFIG_CACHE_SECONDS, base)
        return base

    def push_config(self, conn: Connection, config: dict, nonces: list) -> None:
        """The config with the used codes; a long list goes on in `used` frames, so every
        frame stays far below the frame limit."""
        conn.pushed_at = time.monotonic()
        size = self.options.used_per_frame
        conn.send(p.message(p.CONFIG, **config, nonces=nonces[:size]))
        self.send_used(conn, nonces[size:])

    def send_used(self, conn: Connection, nonces: list) -> None:
        size = self.options.used_per_frame
        for start in range(0, len(nonces), size):
            conn.send(p.message(p.USED, nonces=nonces[start:start + size]))

    def used(self, use: dict) -> None:
        """A code's slot was used somewhere: tell the community's bridges here, at once."""
        bridges = self.communities.get(use["community_id"])
        if not bridges:
            return
        claim = UseClaim(bytes.fromhex(use["claim"]), use["limit"], use["expires"], "")
        delta = p.message(p.USED, nonces=[[claim.slot_key(use["count"] - 1).hex(), use["expires"]]])
        for conn in list(bridges):
            conn.send(delta)

    async def on_config_ack(self, conn: Connection, msg: dict) -> None:
        conn.config_version = msg["version"]

    def on_error(self, conn: Connection, msg: dict) -> None:
        log.info("bridge %s reports %s: %s", conn.bridge, msg.get("code"), msg.get("message"))

    async def config_changed(self, community_id: str) -> None:
        """Re-read the gates of a community and push changed configs to their bridges."""
        self.configs.pop(community_id, None)
        self.config_reads.pop(community_id, None)  # a read begun before the change is not kept
        for bridge, (_, creds) in list(self.credentials.items()):  # their gate docs may be old
            if str(creds[2]["community_id"]) == community_id:
                del self.credentials[bridge]
        self.app.passes.forget_community(community_id)
        nonces = None
        for conn in list(self.communities.get(community_id, ())):
            gate = conn.creds[2]
            fresh = await self.app.db.gates.find_one({"_id": gate["_id"]})
            conn.creds = (conn.creds[0], conn.creds[1], fresh or gate)
            config = await self.config_for(conn.creds[2])
            if config["version"] != conn.config_version:
                if nonces is None:
                    nonces = await self.bridges.used_codes(community_id)
                self.push_config(conn, config, nonces)

    # -- scans ----------------------------------------------------------------------------------------

    async def on_scan(self, conn: Connection, msg: dict) -> None:
        if self.app.stores.down():  # known down: no check left waiting on the driver here
            conn.send(p.error("scan_failed", "could not check the code", p.SCAN))
            return
        try:
            frames = await self.access.scan(conn.creds[2], msg, self.options.command_ttl)
        except Exception:
            # The bridge decides offline when no answer comes within its budget.
            log.exception("gate hub: scan check failed for %s", conn.bridge)
            conn.send(p.error("scan_failed", "could not check the code", p.SCAN))
            return
        for frame in frames:
            conn.send(frame)

    # -- events ------------------------------------------------------------------------------------------

    async def on_events(self, conn: Connection, msg: dict) -> None:
        """Store a batch and acknowledge it only if it continues what this connection has
        acknowledged (`after`): an ack means every event up to it is stored, with no gap. A
        batch that fails to store, and every later one until the bridge sends again from the
        last ack, gets `error{events_not_stored, upto}` and moves nothing forward."""
        items = msg["items"]
        previous, conn.events_sent = conn.events_sent, items[-1]["seq"]
        # Without `after` a batch follows the previous one (the first: it says nothing).
        after = msg.get("after", previous if previous is not None else items[0]["seq"] - 1)
        if conn.events_upto is None:
            conn.events_upto = after  # the bridge's own last ack, from an earlier session
        if after > conn.events_upto:
            # Something between the last ack and this batch was not stored.
            self._events_not_stored(conn, "events before this batch were not stored")
            return
        # Events at or below an upto this connection was sent are stored and their alarms
        # raised: a bridge re-sending them costs only this filter, not a rejected insert each.
        fresh = [item for item in items if item["seq"] > conn.events_upto]
        try:
            await self.access.bridge_events(conn.creds[1], conn.creds[2], fresh,
                                            resent=len(items) - len(fresh))
        except Exception as exc:  # not stored (the store is down, say): the bridge retries
            log.warning("gate hub: events of %s not stored: %s", conn.bridge, exc)
            self._events_not_stored(conn, "events not stored; send them again")
            return
        # Never lower than what this connection was told already: upto only grows.
        conn.events_upto = max(conn.events_upto, items[-1]["seq"])
        conn.send(p.message(p.EVENTS_ACK, upto=conn.events_upto))

    @staticmethod
    def _events_not_stored(conn: Connection, text: str) -> None:
        conn.send({**p.error(p.EVENTS_NOT_STORED, text, p.EVENTS), "upto": conn.events_upto})

    # -- commands ---------------------------------------------------------------------------------------------

    async def send_command(self, bridge: str, cmd: dict, wait: float,
                           on_ack=None) -> list[dict] | None:
        """Queue the command, have the bridge's holder send it and collect acknowledgements
        until a final one or `wait`; None when the bridge is offline. `on_ack(ack)` is called
        as each one arrives. (The gate service's transport for remote opens:
        GateAccess.remote_open.)"""
        # A bridge connected to this process is online: Redis is asked only about others.
        if bridge not in self.connections and await self.presence.owner(bridge) is None:
            return None
        waiter = self.waiters[cmd["id"]] = Waiter(bridge, on_ack)
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
                    while not waiter.final and not waiter.offline:
                        waiter.updated.clear()
                        await waiter.updated.wait()
            if waiter.offline and not waiter.levels:
                # Its hub died before the bridge said anything: never deliver it later.
                await self.app.redis.hdel(key, cmd["id"])
                return None
        finally:
            del self.waiters[cmd["id"]]
        return waiter.levels

    def _deliver(self, conn: Connection, cmd: dict, origin: str) -> None:
        self.delivered[cmd["id"]] = (origin, conn)
        conn.send(cmd)
        log.info("gate hub: %s %s sent to bridge %s", cmd["op"], cmd["id"], conn.bridge,
                 extra={"trace_id": p.trace_id(cmd.get("trace")), "command_id": cmd["id"]})

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
        command_id, level = msg["id"], msg["level"]
        origin, delivered_on = self.delivered.get(command_id, (None, None))
        if delivered_on is not conn:
            # An open that answered a scan (its outcome shows in the door events), or a
            # command this session was never given: only its own bridge's session may
            # acknowledge a command.
            return
        ack = {"id": command_id, "level": level,
               **{k: msg[k] for k in ("reason", "duplicate") if msg.get(k)}}
        if level == p.RECEIVED or level in p.FINAL_LEVELS:
            self.spawn(self.app.redis.hdel(PENDING + conn.bridge, command_id))
        if level in p.FINAL_LEVELS:
            del self.delivered[command_id]
        if origin == self.instance:
            self._ack_arrived(ack)
        else:
            self.spawn(self.app.redis.publish(f"gate:acks:{origin}", json.dumps(ack)))

    def _ack_arrived(self, ack: dict) -> None:
        waiter = self.waiters.get(ack["id"])
        if waiter is not None:
            waiter.add(ack)

    # -- instances that die holding bridges -------------------------------------------------------

    async def _keep_lease(self) -> None:
        """Renew this instance's lease four times per lease (or heartbeat, the shorter) and,
        right after a renewal (the watcher takes no bridge from a live lease), refresh the
        bridges' presence every heartbeat in one pipeline. Apart from the sweep: a slow Redis
        must not hold up the sessions' timers."""
        options = self.options
        tick = min(options.lease, options.heartbeat) / 4
        presence_at = 0.0
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), tick)
                return
            try:
                if not await self.presence.renew(self.instance, options.lease):
                    await self._relet()
                elif time.monotonic() - presence_at >= options.heartbeat and self.connections:
                    presence_at = time.monotonic()
                    await self.presence.set_present(list(self.connections), self.instance,
                                                  p.MISSED_HEARTBEATS * options.heartbeat)
                self.renewing_since = self.renewing_since or time.monotonic()
            except redis.exceptions.RedisError:
                self.renewing_since = 0.0

    async def _relet(self) -> None:
        """Our lease lapsed (this process stalled, or Redis was out of reach or lost it): take
        it again, so the watcher stops declaring our bridges offline; those it did declare
        meanwhile are online again now."""
        self.lapses += 1
        log.error("gate hub %s: instance lease lapsed; taking it again", self.instance)
        await self.presence.register(self.instance, self.options.lease)
        back = await self.presence.reannounce(list(self.connections), self.instance,
                                              p.MISSED_HEARTBEATS * self.options.heartbeat)
        for bridge in back:
            conn = self.connections.get(bridge)
            if conn is not None:
                self.spawn(self.access.bridge_status(conn.creds[1], online=True))
        self.changes.changed()

    async def _watch(self) -> None:
        """One pass of the presence watcher (the instance holding its lease): the bridges of
        holders whose lease lapsed, other than this one, are offline unless they reconnected
        elsewhere — recorded once per dead holder (event, alarm, staff feed), and their waiting
        opens end now.
        Only after a lease of working Redis here: after a Redis outage every lease has
        lapsed, and the live instances need one renewal to take theirs again."""
        if not self.renewing_since or time.monotonic() - self.renewing_since < self.options.lease:
            return
        for holder, since in await self.presence.dead_holders():
            if holder == self.instance:
                # Our own lease lapsed while this process stalled (it is running this): its
                # bridges are connected, and the lease keeper takes the lease again.
                continue
            for bridge_id, outcome in await self.presence.orphans(holder):
                doc = None if outcome == "elsewhere" else await self.bridges.bridge(bridge_id)
                if doc is not None:
                    await self.access.bridge_status(doc, online=False,
                                                    key=f"lost:{holder}:{since}")
                    await self.app.redis.publish(OFFLINE_CHANNEL, json.dumps({"bridge": bridge_id}))
                    self.declared_offline += 1
                    log.warning("gate hub: bridge %s offline (its hub %s died)", bridge_id, holder)
                await self.presence.forget(holder, bridge_id)
            await self.presence.forget_holder(holder)
        self.changes.changed()

    def _offline(self, bridge: str) -> None:
        for waiter in self.waiters.values():
            if waiter.bridge == bridge:
                waiter.offline = True
                waiter.updated.set()

    # -- cross-process messages ----------------------------------------------------------------------------------

    async def _listen(self) -> None:
        channels = ("gate:deliver", f"gate:acks:{self.instance}", "gate:kick", CONFIG_CHANNEL,
                    USED_CHANNEL, SESSIONS_CHANNEL, OFFLINE_CHANNEL)
        while True:
            try:
                async with self.pubsub_redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels)
                    # Key changes announced while unsubscribed were missed: read keys again.
                    self.credentials.clear()
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
                self.spawn(self.presence.forget(self.instance, conn.bridge))
                conn.bye("replaced")  # the bridge is online elsewhere
        elif channel == CONFIG_CHANNEL:
            await self.config_changed(data["community_id"])
        elif channel == USED_CHANNEL:
            self.used(data)
        elif channel == SESSIONS_CHANNEL:
            self.end_sessions(data["bridge"], data["reason"])
        elif channel == OFFLINE_CHANNEL:
            self._offline(data["bridge"])
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
                                  max_handshakes=settings.gate_max_handshakes,
                                  command_ttl=settings.gate_command_ttl,
                                  ssl_context=ssl_context(settings.gate_tls_cert, settings.gate_tls_key)))
    await hub.start(settings.gate_port if port is None else port, address)
    app.gate_hub = hub
    return hub


async def _serve(port: int, address: str) -> None:
    """A hub alone, on the web app's settings (for tests and for running hubs separately)."""
    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level)
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
    metrics.process_exited()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m server.gate_hub")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="", help="bind address (default: all)")
    logs.configure()
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.address))
