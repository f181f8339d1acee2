"""The program on the gate box: one outgoing connection to the hub, the door, offline mode.

A session: connect (TLS unless the config allows plain TCP), hello ->
challenge -> auth -> welcome, then concurrently read frames, send heartbeats and
stream buffered events. Any failure ends the session and the bridge reconnects
after an exponential backoff with full jitter. Scans go to the server; when it
is not connected or does not answer within the gate's budget the bridge
decides locally with the shared decision rules and its cached config.
"""

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
import ssl
import time
import tomllib
import uuid

from gate_bridge import logs, wire
from gate_bridge import protocol as p
from gate_bridge.decision import DEFAULT_SKEW, decide, effective_mode, gate_info
from gate_bridge.session import HEARTBEAT_DUE, BridgeSession, Limits, Received, Welcomed

log = logging.getLogger("gate_bridge")

CAPABILITIES = ("open", "door_sensor", "offline", "used")
INPUTS = ("exit", "tamper", "power", "fire")  # contacts besides the door (bridge.toml [inputs.*])
READ_SIZE = 65536


@dataclasses.dataclass
class BridgeConfig:
    bridge_id: str
    secret: str
    host: str = "127.0.0.1"
    port: int = 7000
    tls: bool = True
    allow_plain: bool = False  # plain TCP only when a lab config says so explicitly
    ca_file: str | None = None
    server_hostname: str | None = None
    codec: str = "msgpack"
    firmware: str = "xiaoqu-bridge/1"
    direction: str = "in"
    store_path: str = "bridge.sqlite"
    max_events: int = 10000
    decision_budget: float = 0.3  # seconds to wait for the server's scan answer
    door_open_timeout: float = 5.0  # after the lock releases, how long to wait for the door
    held_open_after: float = 30.0
    connect_timeout: float = 5.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    heartbeat: float = p.DEFAULT_HEARTBEAT  # until the server's welcome says otherwise
    shutdown_timeout: float = 0.5  # SIGTERM to exit: bye to the hub, then stop, within this


def load_config(path: str) -> tuple[BridgeConfig, dict]:
    """The [bridge] table as BridgeConfig, and the whole document (driver tables)."""
    with open(path, "rb") as f:
        document = tomllib.load(f)
    table = dict(document.get("bridge", {}))
    if "secret_file" in table:
        with open(table.pop("secret_file")) as f:
            table["secret"] = f.read().strip()
    known = {f.name for f in dataclasses.fields(BridgeConfig)}
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown [bridge] settings: {', '.join(sorted(unknown))}")
    return BridgeConfig(**table), document


class SessionEnded(Exception):
    def __init__(self, text: str, retry_after: float | None = None):
        super().__init__(text)
        self.retry_after = retry_after  # the hub said `busy`: not before this many seconds


class Bridge:
    def __init__(self, config: BridgeConfig, store, scanner, relay, door, inputs=None,
                 clock=time.time):
        """`inputs`: contacts by name (gate_bridge.drivers.INPUTS: exit, tamper, power, fire)."""
        if not config.tls and not config.allow_plain:
            raise ValueError("plain TCP needs allow_plain = true (lab use only)")
        self.config = config
        self.key = p.derive_key(config.secret)
        self.store, self.scanner, self.relay, self.door = store, scanner, relay, door
        self.clock = clock
        self.offset = 0.0  # server clock minus ours, from the last server time we saw
        self.heartbeat = config.heartbeat
        self.writer: asyncio.StreamWriter | None = None  # while a session is up
        self.session: BridgeSession | None = None  # while connected, handshake included
        self.session_tasks: set[asyncio.Task] = set()
        self.retimed = asyncio.Event()  # the session's timers changed (welcome)
        self.codec = config.codec
        self.sessions = 0  # authenticated sessions so far
        # The server's word on the mode (the last config, kept across restarts and while the
        # link is down) and the local fire-panel input; self.mode is what they rank to.
        self.server_mode = ((store.config() or {}).get("rules") or {}).get("mode", "normal")
        self.fire_input = False
        self.failures, self.last_failure = 0, None  # sessions that ended, and why the last did
        self.busy_refusals = 0  # hellos the hub answered `busy` (it had enough handshakes)
        self.mode = "normal"
        self.pending_scans: dict[str, asyncio.Future] = {}
        self.decided_locally: collections.deque = collections.deque(maxlen=256)
        self.door_waiters: list[asyncio.Future] = []
        self.released_until = 0.0  # the lock is released (by us) until then: not forced
        self.held_timer: asyncio.TimerHandle | None = None
        self.buffer_warned = False
        self.events_waiting = asyncio.Event()
        # The hub did not store a batch: send again from the last ack after a backoff
        # (`event_retries` in a row so far; `events_refused` counts them all).
        self.events_retry = False
        self.event_retries = self.events_refused = 0
        self.changes = wire.Changes()  # told after every frame and state change
        self.tasks: set[asyncio.Task] = set()
        door.on_change(self._door_changed)
        self.inputs = inputs or {}
        handlers = {"exit": self._exit_pressed, "tamper": self._tamper_changed,
                    "power": self._power_changed, "fire": self._fire_changed}
        for name, contact in self.inputs.items():
            if name not in handlers:
                raise ValueError(f"unknown input {name!r} (known: {', '.join(handlers)})")
            contact.on_change(handlers[name])

    # -- time ------------------------------------------------------------------------

    def server_now(self) -> float:
        return self.clock() + self.offset

    # -- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Scan loop plus sessions with reconnect, until cancelled."""
        await self._apply_mode()
        scans = asyncio.create_task(self._scan_loop())
        attempt = 0
        try:
            while True:
                before = self.sessions
                retry_after = 0.0
                try:
                    await self._session()
                except (OSError, TimeoutError, SessionEnded, ssl.SSLError) as exc:
                    self.failures += 1
                    self.last_failure = f"{type(exc).__name__}: {exc}"
                    retry_after = getattr(exc, "retry_after", None) or 0.0
                    if retry_after:
                        self.busy_refusals += 1
                        log.info("%s: hub busy, back in %.1f s or more",
                                 self.config.bridge_id, retry_after)
                    else:
                        log.warning("%s: session ended: %s: %s", self.config.bridge_id,
                                    type(exc).__name__, exc)
                self.changes.changed()
                attempt = 0 if self.sessions > before else attempt + 1
                # Full jitter: a hub restart must not be followed by every bridge at once;
                # a busy hub's retry_after comes first (gate-protocol.md §4.2).
                cap = min(self.config.backoff_max, self.config.backoff_base * 2 ** attempt)
                await asyncio.sleep(retry_after + random.uniform(0, cap))
        finally:
            scans.cancel()
            for task in list(self.tasks):
                task.cancel()

    async def say_bye(self, timeout: float) -> None:
        """Tell the hub the session ends on purpose (bye{shutdown}), waiting at most
        `timeout` seconds for the bytes to leave."""
        writer, session = self.writer, self.session
        if writer is None or session is None:
            return
        session.bye("shutdown")
        with contextlib.suppress(OSError, SessionEnded, TimeoutError):
            async with asyncio.timeout(timeout):
                await self._flush(writer)

    async def _open(self):
        context = None
        if self.config.tls:
            context = ssl.create_default_context(cafile=self.config.ca_file)
        return await asyncio.wait_for(asyncio.open_connection(
            self.config.host, self.config.port, ssl=context,
            server_hostname=(self.config.server_hostname or self.config.host) if context else None),
            self.config.connect_timeout)

    async def _session(self) -> None:
        """One connection: the handshake and then the session, run by BridgeSession."""
        reader, writer = await self._open()
        session = BridgeSession(Limits(heartbeat=self.heartbeat,
                                       handshake_timeout=self.config.connect_timeout),
                                self.config.bridge_id, self.key, self.codec)
        session.hello(firmware=self.config.firmware, caps=list(CAPABILITIES),
                      last_seq=self.store.acked_seq, config_version=self._config_version())
        self.session = session
        writer.write(session.data_to_send())
        workers = [asyncio.create_task(self._read_loop(reader, writer)),
                   asyncio.create_task(self._timer_loop(writer))]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise what ended the session
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.writer = self.session = None
            for future in self.pending_scans.values():
                future.cancel()
            writer.close()

    def _welcomed(self, writer, welcome: dict) -> None:
        self.offset = float(welcome["time"]) - self.clock()
        self.heartbeat = float(welcome.get("heartbeat", self.heartbeat))
        self.session.limits = dataclasses.replace(self.session.limits, heartbeat=self.heartbeat)
        self.retimed.set()
        self.writer = writer
        self.sessions += 1
        log.info("%s: connected (session %d)", self.config.bridge_id, self.sessions)
        self.events_waiting.set()
        self._session_task(self._event_loop())

    def _session_task(self, coroutine) -> None:
        """A task that lives as long as this session (cancelled with the read loop)."""
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        self.session_tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.session_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(
                task.exception(), (SessionEnded, OSError)):
            log.error("%s: task failed", self.config.bridge_id, exc_info=task.exception())

    async def _flush(self, writer) -> None:
        data = self.session.data_to_send()
        if data:
            writer.write(data)
            await writer.drain()
        if self.session.closed:
            ended = self.session.closed_by
            raise SessionEnded(f"{ended.code}: {ended.text}", ended.retry_after)

    async def send(self, msg: dict) -> None:
        if self.writer is None or self.session is None:
            raise SessionEnded("not connected")
        self.session.send(msg)
        await self._flush(self.writer)

    async def wait(self, predicate, timeout: float = wire.WAIT) -> None:
        """Wait until `predicate()` holds (tests, simulator); re-checked on every change."""
        await self.changes.wait(predicate, timeout)

    # -- the session's workers ---------------------------------------------------------------

    async def _read_loop(self, reader, writer) -> None:
        handlers = {p.HEARTBEAT: self._on_heartbeat, p.OPEN: self._on_command,
                    p.CONFIG: self._on_config, p.USED: self._on_used,
                    p.SCAN_RESULT: self._on_scan_result, p.EVENTS_ACK: self._on_events_ack,
                    p.ERROR: self._on_error}
        session = self.session
        try:
            while True:
                for event in session.receive_data(await reader.read(READ_SIZE)):
                    if type(event) is Received:
                        await handlers[event.op](event.message)
                    elif type(event) is Welcomed:
                        self._welcomed(writer, event.message)
                await self._flush(writer)
                self.changes.changed()
        finally:
            for task in list(self.session_tasks):
                task.cancel()

    async def _timer_loop(self, writer) -> None:
        """Heartbeats, the handshake deadline and heartbeat loss, from the session's timers."""
        session = self.session
        while True:
            # The welcome may set a shorter heartbeat: it wakes this loop to take it up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(session.limits.heartbeat / 4, 1.0)):
                    await self.retimed.wait()
            self.retimed.clear()
            for event in session.tick(time.monotonic()):
                if event is HEARTBEAT_DUE:
                    session.send(p.message(p.HEARTBEAT, t=self.clock(), drift=-self.offset,
                                           config_version=self._config_version(),
                                           buffer=round(self.store.fill_ratio, 3)))
            await self._flush(writer)

    async def _event_loop(self) -> None:
        sent = self.store.acked_seq  # every unacknowledged event is sent again per session
        while True:
            if self.events_retry:
                # Backoff with equal jitter: never at once (errors for batches already in
                # flight arrive meanwhile and are folded into this retry), never in step.
                cap = min(self.config.backoff_max,
                          self.config.backoff_base * 2 ** self.event_retries)
                self.event_retries += 1
                await asyncio.sleep(random.uniform(cap / 2, cap))
                self.events_retry = False
                sent = self.store.acked_seq
            items = self.store.unacked(sent, p.MAX_EVENTS_PER_FRAME)
            if not items:
                self.events_waiting.clear()
                await self.events_waiting.wait()
                continue
            # `after`: the batch follows that seq, so the hub can tell a gap.
            await self.send(p.message(p.EVENTS, after=sent, items=items))
            sent = items[-1]["seq"]

    # -- incoming ------------------------------------------------------------------------------

    async def _on_heartbeat(self, msg: dict) -> None:
        if isinstance(msg.get("t"), (int, float)):
            self.offset = msg["t"] - self.clock()

    async def _on_error(self, msg: dict) -> None:
        if msg.get("ref_op") == p.EVENTS and msg.get("code") in (p.EVENTS_NOT_STORED,
                                                                "server_error"):
            self.events_refused += 1
            self.events_retry = True
            self.events_waiting.set()
        log.warning("%s: server error %s: %s", self.config.bridge_id, msg.get("code"),
                    msg.get("message"))

    async def _on_events_ack(self, msg: dict) -> None:
        self.store.ack_upto(msg["upto"])  # a lower upto than before is no news (max)
        self.event_retries = 0

    async def _on_scan_result(self, msg: dict) -> None:
        future = self.pending_scans.get(msg.get("id"))
        if future is not None and not future.done():
            future.set_result(msg)

    async def _on_used(self, msg: dict) -> None:
        """Codes used elsewhere since the last config: refused here too, offline."""
        self.store.add_used([(p.as_bytes(n, "nonce"), e) for n, e in msg.get("nonces") or ()])

    async def _on_config(self, msg: dict) -> None:
        await self._on_used(msg)
        config = {k: msg.get(k) for k in ("version", "keys", "revoked", "gate", "rules",
                                           "skew_seconds")}
        self.store.save_config(config)
        self.store.prune(self.server_now())  # used codes past their expiry
        self.server_mode = (config.get("rules") or {}).get("mode", "normal")
        await self._apply_mode()
        await self.send(p.message(p.CONFIG_ACK, version=config["version"]))

    def _config_version(self) -> str | None:
        config = self.store.config()
        return config and config.get("version")

    # -- commands: act at most once, never after the ttl --------------------------------------

    async def _ack(self, command_id: str, level: str, **extra) -> None:
        if level != p.RECEIVED:  # claim_command stored that one, durably
            self.store.set_command_level(command_id, level)
        if level == p.REFUSED:
            log.warning("%s: open %s refused: %s", self.config.bridge_id, command_id,
                        extra.get("reason"), extra={"command_id": command_id})
        await self.send(p.message(p.ACK, id=command_id, level=level, **extra))

    async def _on_command(self, msg: dict) -> None:
        # The command's trace on every line about it, the door's task included (it inherits).
        bound = logs.bind(trace_id=p.trace_id(msg.get("trace")), command_id=msg.get("id"))
        try:
            await self._command(msg)
        finally:
            logs.unbind(bound)

    async def _command(self, msg: dict) -> None:
        command_id, issued_at, ttl = p.command_fields(msg)  # checked by the session
        log.info("%s: %s %s arrived", self.config.bridge_id, msg["op"], command_id)
        if not self.store.claim_command(command_id, p.RECEIVED, self.clock()):
            # Seen before (a resend after reconnect, or a duplicate): report, do not act.
            await self.send(p.message(p.ACK, id=command_id, duplicate=True,
                                      level=self.store.command_level(command_id)))
            return
        if p.expired(issued_at, ttl, self.server_now()):
            await self._ack(command_id, p.REFUSED, reason="expired")
            return
        if msg.get("scan") in self.decided_locally:
            await self._ack(command_id, p.REFUSED, reason="decided_offline")
            return
        await self._ack(command_id, p.RECEIVED)
        self._spawn(self._open_door(command_id, msg))  # outlives the session: the door finishes

    async def _open_door(self, command_id: str | None, msg: dict) -> None:
        """Release the lock; report actuated, then opened / not_opened from the door sensor."""
        opened = asyncio.get_running_loop().create_future()
        self.door_waiters.append(opened)
        pulse_ms = int(msg.get("pulse_ms") or self._rules().get("pulse_ms", p.DEFAULT_PULSE_MS))
        self.released_until = self.clock() + pulse_ms / 1000 + 1.0
        if self.mode != "open":  # held open already: a pulse would end the hold
            await self.relay.pulse(pulse_ms)
        if command_id is None:  # a local (offline) decision: nobody to acknowledge to
            self.door_waiters.remove(opened)
            return
        await self._ack_quietly(command_id, p.ACTUATED)
        if self.door.active:
            opened.set_result(True)
        try:
            await asyncio.wait_for(opened, self.config.door_open_timeout)
            level = p.OPENED
        except TimeoutError:
            level = p.NOT_OPENED
        finally:
            if opened in self.door_waiters:
                self.door_waiters.remove(opened)
        await self._ack_quietly(command_id, level)
        log.info("%s: open %s %s", self.config.bridge_id, command_id, level)

    async def _ack_quietly(self, command_id: str, level: str) -> None:
        """Record the level; send it if connected (a lost ack is resent as a duplicate reply)."""
        try:
            await self._ack(command_id, level)
        except (SessionEnded, OSError):
            pass
        self.changes.changed()

    async def _apply_mode(self) -> None:
        """Hold the relay open in fire release; record each change of the mode in force."""
        mode = effective_mode(self.server_mode, "open" if self.fire_input else None)
        if mode != self.mode:
            self.mode = mode
            await self.relay.hold(mode == "open")
            self.record("mode_changed", mode=mode)

    async def fire_panel(self, active: bool) -> None:
        """The fire-panel contact (an input driver calls this): release the gate locally at
        once, whatever the server says, and report it (`fire_release` raises an alarm)."""
        if active != self.fire_input:
            self.fire_input = active
            self.record("fire_release", active=active)
            await self._apply_mode()

    # -- the door and the other inputs -------------------------------------------------------------

    def _exit_pressed(self, active: bool) -> None:
        if active:  # egress is never locked, whatever the mode
            self.record("exit_request")
            self._spawn(self._open_door(None, {}))

    def _tamper_changed(self, active: bool) -> None:
        if active:
            self.record("tamper")

    def _power_changed(self, mains_lost: bool) -> None:
        self.record("power_lost" if mains_lost else "power_restored")

    def _fire_changed(self, active: bool) -> None:
        self._spawn(self.fire_panel(active))

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _door_changed(self, is_open: bool) -> None:
        now = self.clock()
        if is_open:
            for future in self.door_waiters:
                if not future.done():
                    future.set_result(True)
            forced = now > self.released_until and self.mode != "open"
            # Stored once the opens waiting on the door have sent their `opened` (queued
            # first): the event's synced write is not on the remote open's answer, which
            # says the sensor saw the door open, not that the event is stored.
            asyncio.get_running_loop().call_soon(self.record,
                                                 "door_forced" if forced else "door_opened")
            if self.mode != "open":
                self.held_timer = asyncio.get_running_loop().call_later(
                    self.config.held_open_after, self.record, "door_held")
        else:
            if self.held_timer is not None:
                self.held_timer.cancel()
                self.held_timer = None
            self.record("door_closed")

    def record(self, type_: str, **data) -> int:
        """Buffer an event durably and wake the sender."""
        seq = self.store.append_event(type_, self.server_now(), **data)
        if self.store.fill_ratio >= 0.8 and not self.buffer_warned:
            self.buffer_warned = True
            self.store.append_event("buffer_high", self.server_now(),
                                    fill=round(self.store.fill_ratio, 3), dropped=self.store.dropped)
        elif self.store.fill_ratio < 0.8:
            self.buffer_warned = False
        self.events_waiting.set()
        self.changes.changed()
        return seq

    # -- scans --------------------------------------------------------------------------------------

    async def _scan_loop(self) -> None:
        while True:
            text = await self.scanner.read()
            try:
                await self.handle_scan(text)
            except Exception:  # one bad scan must not stop the gate
                log.exception("%s: scan failed", self.config.bridge_id)

    async def handle_scan(self, text: str, direction: str | None = None) -> dict:
        """Ask the server within the budget, else decide locally. Returns the outcome (who
        decided, allow, reason, and the scan's id: the server logs the scan under it)."""
        direction = direction or self.config.direction
        scan_id = uuid.uuid4().hex[:16]
        if self.writer is not None:
            future = asyncio.get_running_loop().create_future()
            self.pending_scans[scan_id] = future
            try:
                await self.send(p.message(p.SCAN, id=scan_id, text=text, direction=direction,
                                          at=self.server_now()))
                result = await asyncio.wait_for(future, self._budget())
                return {"source": "server", "allow": bool(result.get("allow")),
                        "reason": result.get("reason"), "scan": scan_id}
            except (TimeoutError, asyncio.CancelledError, SessionEnded, OSError):
                if asyncio.current_task().cancelling():
                    raise
            finally:
                self.pending_scans.pop(scan_id, None)
        return await self.decide_offline(scan_id, text, direction)

    def _rules(self) -> dict:
        return (self.store.config() or {}).get("rules") or {}

    def _budget(self) -> float:
        return self._rules().get("budget_ms", self.config.decision_budget * 1000) / 1000

    async def decide_offline(self, scan_id: str, text: str, direction: str) -> dict:
        self.decided_locally.append(scan_id)
        config = self.store.config()
        if config is None:
            allow, reason = False, "no_config"
        else:
            gate = gate_info(config["gate"], config.get("rules"),
                             "open" if self.fire_input else None)
            decision = decide(text, gate, self.server_now(), config["keys"],
                              set(config.get("revoked") or ()), self.store, direction=direction,
                              skew=config.get("skew_seconds") or DEFAULT_SKEW)
            allow, reason = decision.allow, decision.reason
        self.record("offline_decision", scan=scan_id, text=text, direction=direction,
                    allow=allow, reason=reason)
        if allow:
            await self._open_door(None, {})
        return {"source": "bridge", "allow": allow, "reason": reason, "scan": scan_id}

