"""The gate protocol's session as a sans-I/O state machine, for both ends of the link.

Nothing here touches a socket or a clock of its own: the caller feeds the bytes
it read (`receive_data`) and gets events back, writes whatever `data_to_send()`
returns, calls `tick(now)` every so often for the timers, and closes its
transport once `closed` is true (after writing the last bytes, which say why).
The hub (server/gate_hub.py), the bridge program (gate_bridge/bridge.py), the
test peers and the benchmarks all run this one implementation of framing, the
mutual challenge-response, version negotiation, heartbeats, rate and error
limits, and the per-op checks (one table per direction).

Server role: `hello` -> `Hello` event -> the caller looks up the bridge's key
and calls `challenge(key or None)` -> `auth` -> `Authenticated` -> the caller
sends `welcome(...)`. Bridge role: `hello(...)` -> challenge checked here
(`Challenged`, or closed with `server_auth_failed` without a word) -> `auth`
sent -> `Welcomed`. Afterwards each checked application frame is a `Received`.

Bad frames — undecodable payloads and known ops with bad fields — count
toward a limit of BAD_FRAME_LIMIT per BAD_FRAME_WINDOW seconds; an unknown op
is answered but never counted, so a newer peer's optional ops cost nothing.
"""

import dataclasses
import time

from gate_bridge import protocol as p
from gate_bridge import wire
from gate_bridge.decision import DEFAULT_TIME_ZONE, zone_info

BAD_FRAME_LIMIT = 5  # bad frames tolerated within one window; the next one closes
BAD_FRAME_WINDOW = 60.0  # seconds

# States
HELLO, KEY, AUTH, WELCOME, READY, CLOSED = "hello", "key", "auth", "welcome", "ready", "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Per-process settings shared by every session (kept out of each session's memory)."""
    heartbeat: float = p.DEFAULT_HEARTBEAT
    handshake_timeout: float = 5.0  # hello to authenticated, from the TCP connection
    read_timeout: float = 10.0  # a frame begun must be finished within this
    max_frame: int = wire.MAX_FRAME
    rate: float = 0.0  # frames per second, sustained (0: unlimited)
    burst: float = 200.0
    clock: object = time.monotonic


# -- events ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Hello:
    """Server role: a bridge introduced itself; answer with `challenge(key)`."""
    bridge: str
    version: int
    message: dict


@dataclasses.dataclass(frozen=True, slots=True)
class Challenged:
    """Bridge role: the server proved it knows the key; our `auth` is queued."""
    message: dict


@dataclasses.dataclass(frozen=True, slots=True)
class Authenticated:
    """Server role: the bridge's proof holds; answer with `welcome(...)`."""


@dataclasses.dataclass(frozen=True, slots=True)
class Welcomed:
    """Bridge role: the session is up."""
    message: dict


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """An application frame, its fields checked by the op table."""
    op: str
    message: dict


@dataclasses.dataclass(frozen=True, slots=True)
class HeartbeatDue:
    """Nothing was sent for a heartbeat interval: send `hb` (its fields are the caller's)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Closed:
    """The session ended: `code` says why; `by_peer` when the peer said so (bye/error)."""
    code: str
    text: str
    by_peer: bool = False
    retry_after: float | None = None  # a `busy` hub's word on when to come back (seconds)


HEARTBEAT_DUE = HeartbeatDue()
AUTHENTICATED = Authenticated()


# -- per-op checks: each returns nothing or raises ProtocolError("bad_field") -------------

def _bad(text: str):
    raise p.ProtocolError("bad_field", text)


def _number(msg: dict, field: str, required: bool = False) -> None:
    value = msg.get(field)
    if (value is None and not required) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)):
        return
    _bad(f"{field} must be a number")


def _short_id(msg: dict, field: str = "id") -> None:
    value = msg.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        _bad(f"{field} must be a string of 1..64 characters")


def _heartbeat(msg: dict) -> None:
    _number(msg, "t")
    _number(msg, "drift")


def _scan(msg: dict) -> None:
    _short_id(msg)
    text = msg.get("text")
    if not isinstance(text, str) or len(text) > p.MAX_SCAN_TEXT:
        _bad(f"text must be a string of at most {p.MAX_SCAN_TEXT} characters")
    if msg.setdefault("direction", "in") not in p.DIRECTIONS:
        _bad("direction must be in or out")


def _ack(msg: dict) -> None:
    _short_id(msg)
    if msg.get("level") not in p.LEVEL_RANK:
        _bad(f"level must be one of {', '.join(p.LEVEL_RANK)}")


def _events(msg: dict) -> None:
    p.event_items(msg)


def _version(msg: dict) -> None:
    if not isinstance(msg.get("version"), str):
        _bad("version must be a string")


def _command(msg: dict) -> None:
    p.command_fields(msg)


def _config(msg: dict) -> None:
    _version(msg)
    if not isinstance(msg.get("keys"), dict) or not isinstance(msg.get("gate"), dict):
        _bad("config needs keys and gate maps")
    try:  # refused while this box's zoneinfo lacks the zone: the last config stays in force
        zone_info(msg["gate"].get("time_zone", DEFAULT_TIME_ZONE))
    except ValueError as exc:
        _bad(str(exc))
    _nonces(msg)


def _nonces(msg: dict) -> None:
    nonces = msg.get("nonces") or []
    if not isinstance(nonces, list):
        _bad("nonces must be a list of [nonce, expires]")
    for entry in nonces:
        if not (isinstance(entry, list) and len(entry) == 2
                and isinstance(entry[1], (int, float))):
            _bad("nonces must be a list of [nonce, expires]")
        p.as_bytes(entry[0], "nonce")


def _scan_result(msg: dict) -> None:
    _short_id(msg)


def _events_ack(msg: dict) -> None:
    upto = msg.get("upto")
    if not isinstance(upto, int) or isinstance(upto, bool) or upto < 0:
        _bad("upto must be a non-negative integer")


def _anything(msg: dict) -> None:
    pass


# What each side may be sent once the session is up. `bye` is the session's own.
TO_HUB = {p.HEARTBEAT: _heartbeat, p.SCAN: _scan, p.ACK: _ack, p.EVENTS: _events,
          p.CONFIG_ACK: _version, p.ERROR: _anything}
TO_BRIDGE = {p.HEARTBEAT: _heartbeat, p.OPEN: _command, p.CONFIG: _config,
             p.USED: _nonces, p.SCAN_RESULT: _scan_result, p.EVENTS_ACK: _events_ack,
             p.ERROR: _anything}


class Session:
    """What both roles share: framing, codec, timers, limits, dispatch by table."""

    __slots__ = ("limits", "state", "codec", "buffer", "outgoing", "opened", "last_rx",
                 "last_tx", "partial_since", "bad_frames", "bad_since", "tokens", "token_at",
                 "bridge", "nonce", "peer_nonce", "key", "closed_by")

    table: dict = {}

    def __init__(self, limits: Limits, codec: str = "msgpack"):
        now = limits.clock()
        self.limits = limits
        self.state = HELLO
        self.codec = codec
        self.buffer = b""
        self.outgoing = ()  # a list only while frames wait (an idle session holds none)
        self.opened = self.last_rx = self.last_tx = now
        self.partial_since = None
        self.bad_frames, self.bad_since = 0, now
        self.tokens, self.token_at = limits.burst, now
        self.bridge: str | None = None
        self.nonce = self.peer_nonce = self.key = None
        self.closed_by: Closed | None = None

    # -- the caller's side ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    @property
    def ready(self) -> bool:
        return self.state == READY

    def data_to_send(self) -> bytes:
        """Bytes to write now (empty when there are none)."""
        if not self.outgoing:
            return b""
        data = b"".join(self.outgoing)
        self.outgoing = ()
        return data

    def send(self, msg: dict) -> None:
        """Queue a frame (dropped once the session is closed)."""
        if self.state != CLOSED:
            if not self.outgoing:
                self.outgoing = []
            self.outgoing.append(wire.encode(msg, self.codec))
            self.last_tx = self.limits.clock()

    def close(self, code: str, text: str) -> Closed:
        """Say why in an error frame, then the session is over."""
        return self._end(code, text, tell=True)

    def bye(self, reason: str) -> Closed:
        """End the session on purpose (`bye{reason}`), e.g. the bridge was re-provisioned."""
        if self.state != CLOSED:
            self.send(p.message(p.BYE, reason=reason))
        return self._end(reason, "bye", tell=False)

    def bad_frame(self, code: str, text: str, ref_op: str | None = None) -> Closed | None:
        """Answer a bad frame with an error and count it; Closed when over the limit."""
        now = self.limits.clock()
        if now - self.bad_since > BAD_FRAME_WINDOW:
            self.bad_frames, self.bad_since = 0, now
        self.bad_frames += 1
        self.send(p.error(code, text, ref_op))
        if self.bad_frames > BAD_FRAME_LIMIT:
            return self.close("too_many_errors",
                              f"more than {BAD_FRAME_LIMIT} bad frames in {BAD_FRAME_WINDOW:.0f} s")
        return None

    def tick(self, now: float) -> list:
        """Timers: handshake deadline, read timeout, heartbeat loss; heartbeat due."""
        limits = self.limits
        if self.state == CLOSED:
            return []
        if self.state != READY:
            if now - self.opened > limits.handshake_timeout:
                return [self._timed_out("auth_timeout", "authenticate within the deadline")]
        elif now - self.last_rx > p.MISSED_HEARTBEATS * limits.heartbeat:
            return [self.close("heartbeat_lost",
                               f"no frame for {p.MISSED_HEARTBEATS} heartbeats")]
        if self.partial_since is not None and now - self.partial_since > limits.read_timeout:
            return [self.close("read_timeout", "frame not completed in time")]
        if self.state == READY and now - self.last_tx >= limits.heartbeat:
            return [HEARTBEAT_DUE]
        return []

    def receive_data(self, data: bytes) -> list:
        """Events for the bytes just read (b"" means the peer closed the stream)."""
        if self.state == CLOSED:
            return []
        if not data:
            return [self._end("connection_lost", "the peer closed the connection", tell=False)]
        now = self.limits.clock()
        self.last_rx = now
        events = []
        try:
            payloads = self._frames(data)
        except wire.FrameTooLarge as exc:
            return [self.close("frame_too_large", str(exc))]
        self.partial_since = (self.partial_since or now) if self.buffer else None
        for payload in payloads:
            if self.state == CLOSED:
                break
            if not self._take_token(now, events):
                continue
            try:
                msg, codec = wire.decode_payload(payload)
            except wire.BadPayload as exc:
                self._add(events, self.bad_frame("bad_frame", str(exc)))
                continue
            try:
                self._add(events, self._dispatch(msg, codec))
            except p.ProtocolError as exc:
                self._add(events, self.bad_frame(exc.code, exc.message, msg["op"]))
        return events

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _add(events: list, event) -> None:
        if event is not None:
            events.append(event)

    def _frames(self, data: bytes) -> list[bytes]:
        try:
            payloads, self.buffer = wire.split(self.buffer + data if self.buffer else data,
                                               self.limits.max_frame)
        except wire.FrameTooLarge:
            self.buffer = b""
            raise
        return payloads

    def _take_token(self, now: float, events: list) -> bool:
        # A token bucket of this one connection, on the caller's clock: nothing shared to count
        # in Redis, and gate_bridge stays free of server dependencies (the `limits` library).
        limits = self.limits
        if not limits.rate:
            return True
        self.tokens = min(limits.burst, self.tokens + (now - self.token_at) * limits.rate)
        self.token_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        if self.tokens > -limits.burst:  # answer each dropped frame for a while, then stay quiet
            self.send(p.error("rate_limited", "too many frames; slow down"))
        self.tokens -= 1
        if self.tokens < -2 * limits.burst:
            events.append(self.close("rate_limited", "too many frames"))
        return False

    def _end(self, code: str, text: str, tell: bool, by_peer: bool = False,
             retry_after: float | None = None) -> Closed:
        if self.state != CLOSED:
            if tell:
                self.send(p.error(code, text))
            self.state = CLOSED
            self.closed_by = Closed(code, text, by_peer, retry_after)
        return self.closed_by

    def _timed_out(self, code: str, text: str) -> Closed:
        return self.close(code, text)

    def _ready_frame(self, msg: dict):
        op = msg["op"]
        if op == p.BYE:
            return self._end(str(msg.get("reason") or "bye"), "the peer said bye", tell=False,
                             by_peer=True)
        check = self.table.get(op)
        if check is None:  # not counted: a newer peer may send optional ops we do not know
            self.send(p.error("unknown_op", f"unknown op {op!r}", op))
            return None
        check(msg)
        return Received(op, msg)

    def _dispatch(self, msg: dict, codec: str):
        raise NotImplementedError


class ServerSession(Session):
    """The hub's end of one bridge connection."""

    __slots__ = ()
    table = TO_HUB

    def _dispatch(self, msg: dict, codec: str):
        op, state = msg["op"], self.state
        if state == READY:
            return self._ready_frame(msg)
        if state == HELLO and op == p.HELLO:
            return self._hello(msg, codec)
        if state == AUTH and op == p.AUTH:
            return self._auth(msg)
        return self.close("not_authenticated", {HELLO: "send hello, then auth", AUTH: "send auth",
                                                KEY: "wait for the challenge"}.get(
                                                    state, "wait for the welcome"))

    def _hello(self, msg: dict, codec: str):
        self.codec = codec  # answer in the codec the bridge chose
        try:
            version = p.negotiate(msg.get("v"))
            bridge, nonce = msg.get("bridge"), p.as_bytes(msg.get("nonce"), "nonce")
            if not isinstance(bridge, str) or not 0 < len(bridge) <= 64 or len(nonce) != p.NONCE_BYTES:
                raise p.ProtocolError("bad_hello", "a bridge id (1..64) and a 16-byte nonce are required")
        except p.ProtocolError as exc:
            code = "unsupported_version" if exc.code == "unsupported_version" else "bad_hello"
            return self.close(code, exc.message)
        self.bridge, self.peer_nonce, self.state = bridge, nonce, KEY
        msg["v"] = version
        return Hello(bridge, version, msg)

    def busy(self, retry_after: float) -> Closed:
        """Refuse the hello for now: the hub has as many handshakes in progress as it takes
        (a reconnect storm). Said at once, before any store is read, so the bridge comes back
        after `retry_after` seconds instead of waiting out its handshake deadline."""
        if self.state != CLOSED:
            self.send({**p.error(p.BUSY, "too many handshakes in progress; come back later"),
                       "retry_after": round(retry_after, 3)})
        return self._end(p.BUSY, "busy", tell=False)

    def challenge(self, key: bytes | None) -> None:
        """Answer the hello. An unknown bridge (`key` None) is challenged like any other, with
        a proof under a random key, so probing cannot tell which bridge ids exist."""
        if self.state != KEY:
            return
        self.key = key
        self.nonce = p.new_nonce()
        proof = p.server_proof(key or p.new_nonce() * 2, self.bridge, self.peer_nonce, self.nonce)
        self.send(p.message(p.CHALLENGE, v=p.VERSIONS[-1], nonce=self.nonce, proof=proof))
        self.state = AUTH

    def _auth(self, msg: dict):
        try:
            given = p.as_bytes(msg.get("proof"), "proof")
        except p.ProtocolError:
            given = b""
        key, self.key = self.key, None  # not kept for the session's lifetime
        if key is None or not p.proof_ok(
                p.bridge_proof(key, self.bridge, self.peer_nonce, self.nonce), given):
            return self.close("auth_failed", "authentication failed")
        # Up once the welcome is sent: no heartbeat may go out before it.
        self.state, self.nonce, self.peer_nonce = WELCOME, None, None
        return AUTHENTICATED

    def welcome(self, server_time: float, config_version: str | None, **extra) -> None:
        if self.state != WELCOME:
            return
        self.send(p.message(p.WELCOME, time=server_time, heartbeat=self.limits.heartbeat,
                            config_version=config_version, **extra))
        self.state = READY


class BridgeSession(Session):
    """The bridge's end: dials, proves it knows the key, checks that the server does too."""

    __slots__ = ("version",)
    table = TO_BRIDGE

    def __init__(self, limits: Limits, bridge_id: str, key: bytes, codec: str = "msgpack"):
        super().__init__(limits, codec)
        self.bridge, self.key = bridge_id, key
        self.version = None

    def hello(self, **fields) -> None:
        """Start the handshake; `fields` are hello's informative ones (firmware, caps,
        last_seq, config_version)."""
        self.nonce = p.new_nonce()
        self.send(p.message(p.HELLO, v=list(p.VERSIONS), bridge=self.bridge, nonce=self.nonce,
                            **fields))
        self.state = AUTH

    def _dispatch(self, msg: dict, codec: str):
        op, state = msg["op"], self.state
        if state == READY:
            return self._ready_frame(msg)
        if op == p.ERROR:  # refused during the handshake (auth_failed, busy, ...)
            retry_after = msg.get("retry_after")
            if not isinstance(retry_after, (int, float)) or isinstance(retry_after, bool) \
                    or not 0 < retry_after <= p.MAX_RETRY_AFTER:
                retry_after = None  # absent or absurd: the bridge's own backoff decides
            return self._end(str(msg.get("code")), str(msg.get("message")), tell=False,
                             by_peer=True, retry_after=retry_after)
        if state == AUTH and op == p.CHALLENGE:
            return self._challenge(msg)
        if state == WELCOME and op == p.WELCOME:
            self.state, self.key = READY, None
            return Welcomed(msg)
        return self._end("unexpected_op", f"{op} during the handshake", tell=False)

    def _challenge(self, msg: dict):
        try:
            server_nonce = p.as_bytes(msg.get("nonce"), "nonce")
            proof = p.as_bytes(msg.get("proof"), "proof")
        except p.ProtocolError as exc:
            return self._end("bad_challenge", exc.message, tell=False)
        if msg.get("v") not in p.VERSIONS:
            return self._end("unsupported_version", f"server chose {msg.get('v')!r}", tell=False)
        self.peer_nonce = server_nonce
        if not p.proof_ok(p.server_proof(self.key, self.bridge, self.nonce, server_nonce), proof):
            # Whoever answered does not know our key (or replays a recorded challenge, which
            # does not cover our fresh nonce): hang up without revealing anything.
            return self._end("server_auth_failed", "server proof does not match", tell=False)
        self.version = msg["v"]
        self.send(p.message(p.AUTH, proof=self.proof()))
        self.state = WELCOME
        return Challenged(msg)

    def proof(self) -> bytes:
        """Our proof for the challenge received (test peers send it to a server that failed)."""
        return p.bridge_proof(self.key, self.bridge, self.nonce, self.peer_nonce)

    def _timed_out(self, code: str, text: str) -> Closed:
        # Before the welcome, the bridge just hangs up and tries again later.
        return self._end("handshake_timeout" if code == "auth_timeout" else code, text, tell=False)
