"""The gate protocol: ops, message shapes, version negotiation, challenge-response.

Pure functions and constants shared by the hub (server) and the bridge; see
docs/gate-protocol.md for the prose. Imports only the standard library.

Authentication: staff provision a per-bridge secret (32 random bytes, shown
once, base64url). Both ends derive the HMAC key K = SHA-256("xiaoqu-gate-key/1"
|| secret); the server keeps only K, encrypted at rest. The secret and K never
cross the wire: each side proves knowledge of K by an HMAC over both fresh
nonces, the bridge id and the side's role, so a recorded proof is worthless in
another session and a proof from one side cannot be reflected as the other's.
"""

import base64
import hashlib
import hmac
import re
import secrets

VERSIONS = (1,)  # protocol versions this code speaks, oldest first
NONCE_BYTES = 16

# Ops. Bridge -> hub
HELLO = "hello"          # {v: [versions], bridge, firmware, caps, last_seq, config_version, nonce}
AUTH = "auth"            # {proof}
SCAN = "scan"            # {id, text, direction, at}
ACK = "ack"              # {id, level, reason?, duplicate?}
EVENTS = "events"        # {after, items: [{seq, type, at, ...}]}
CONFIG_ACK = "config_ack"  # {version}
# Hub -> bridge
CHALLENGE = "challenge"  # {v, nonce, proof}
WELCOME = "welcome"      # {time, heartbeat, config_version, gate}
SCAN_RESULT = "scan_result"  # {id, allow, reason}
OPEN = "open"            # {id, door, pulse_ms, issued_at, ttl, scan?, trace?}
CONFIG = "config"        # {version, format, keys, revoked, nonces, gate, rules, ...}
USED = "used"            # {nonces: [[nonce, expires]]}: codes used since the last config
EVENTS_ACK = "events_ack"  # {upto}: every event up to it is stored, no gap
# Both ways
HEARTBEAT = "hb"         # {t, drift?, config_version?}
ERROR = "error"          # {code, message, ref_op?}
# The error answering an events frame the hub did not store (nor will ack past): the
# bridge sends again, after a backoff, everything after `upto` (its last ack).
EVENTS_NOT_STORED = "events_not_stored"
# The hub's answer to a hello while it has as many handshakes in progress as it takes (a
# reconnect storm): {code: "busy", retry_after: seconds}, then it hangs up. The bridge comes
# back no sooner than that, plus jitter (gate_bridge/bridge.py).
BUSY = "busy"
MAX_RETRY_AFTER = 300.0  # a larger retry_after is taken for a broken hub's, not obeyed
BYE = "bye"              # {reason}

# Command acknowledgement levels, in order; a command's final level is one of FINAL_LEVELS.
RECEIVED, ACTUATED, OPENED, NOT_OPENED, REFUSED = (
    "received", "actuated", "opened", "not_opened", "refused")
LEVEL_RANK = {RECEIVED: 1, ACTUATED: 2, OPENED: 3, NOT_OPENED: 3, REFUSED: 3}
FINAL_LEVELS = frozenset({OPENED, NOT_OPENED, REFUSED})

# Emergency modes, lowest rank first (their ranking: gate_bridge.decision.effective_mode).
MODES = ("normal", "locked", "open")
DIRECTIONS = ("in", "out")

# Event types a bridge reports; ALARM_EVENTS become alarm records on the server.
EVENT_TYPES = frozenset({
    "door_opened", "door_closed", "door_forced", "door_held", "tamper", "power_lost",
    "power_restored", "offline_decision", "buffer_high", "clock_drift", "mode_changed",
    "fire_release",  # {active: bool}: a local fire-panel input held the gate open / let go
    "exit_request",  # the request-to-exit button released the lock
})
ALARM_EVENTS = frozenset({"door_forced", "door_held", "tamper", "power_lost", "buffer_high",
                          "clock_drift", "fire_release"})

DEFAULT_TTL = 5.0
DEFAULT_PULSE_MS = 1000
DEFAULT_HEARTBEAT = 20.0
MISSED_HEARTBEATS = 3  # a peer silent this many intervals is gone
MAX_DRIFT = 2.0  # seconds; QR windows depend on the bridge's clock
MAX_EVENTS_PER_FRAME = 200
MAX_SCAN_TEXT = 1024  # characters of a scanned code
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


class ProtocolError(Exception):
    """A message broke the protocol; `code` goes into the error frame."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def negotiate(offered) -> int:
    """The highest version both sides speak. Raises ProtocolError."""
    if not isinstance(offered, list):
        raise ProtocolError("bad_hello", "v must be a list of versions")
    common = set(VERSIONS) & {v for v in offered if isinstance(v, int)}
    if not common:
        raise ProtocolError("unsupported_version", f"server speaks {list(VERSIONS)}")
    return max(common)


def message(op: str, **fields) -> dict:
    return {"op": op, **fields}


def error(code: str, text: str, ref_op: str | None = None) -> dict:
    return message(ERROR, code=code, message=text, **({"ref_op": ref_op} if ref_op else {}))


# -- secrets and proofs ---------------------------------------------------------

def new_secret() -> str:
    """A fresh per-bridge secret, as shown to staff and written into bridge.toml."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def derive_key(secret: str) -> bytes:
    """The HMAC key both ends use; the server stores this (encrypted), never the secret."""
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    if len(raw) < 16:
        raise ValueError("bridge secret too short")
    return hashlib.sha256(b"xiaoqu-gate-key/1" + raw).digest()


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def as_bytes(value, field: str) -> bytes:
    """Bytes from MessagePack bin or JSON hex. Raises ProtocolError."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise ProtocolError("bad_field", f"{field} must be bytes (hex in JSON)")


def _proof(key: bytes, role: bytes, bridge_id: str, first: bytes, second: bytes) -> bytes:
    data = b"|".join((b"xiaoqu-gate/1", role, bridge_id.encode(), first, second))
    return hmac.new(key, data, hashlib.sha256).digest()


def server_proof(key: bytes, bridge_id: str, bridge_nonce: bytes, server_nonce: bytes) -> bytes:
    return _proof(key, b"server", bridge_id, bridge_nonce, server_nonce)


def bridge_proof(key: bytes, bridge_id: str, bridge_nonce: bytes, server_nonce: bytes) -> bytes:
    return _proof(key, b"bridge", bridge_id, server_nonce, bridge_nonce)


def proof_ok(expected: bytes, given: bytes) -> bool:
    return hmac.compare_digest(expected, given)


# -- checks ------------------------------------------------------------------------

def expired(issued_at: float, ttl: float, now: float) -> bool:
    """A command past its time-to-live must not be acted on."""
    return now > issued_at + ttl


def command_fields(msg: dict) -> tuple[str, float, float]:
    """(id, issued_at, ttl) of a command. Raises ProtocolError."""
    cid, issued, ttl = msg.get("id"), msg.get("issued_at"), msg.get("ttl", DEFAULT_TTL)
    if not isinstance(cid, str) or not cid or len(cid) > 64:
        raise ProtocolError("bad_field", "id must be a non-empty string")
    if not isinstance(issued, (int, float)) or not isinstance(ttl, (int, float)) or ttl <= 0:
        raise ProtocolError("bad_field", "issued_at and ttl must be positive numbers")
    return cid, float(issued), float(ttl)


def trace_id(traceparent: object) -> str | None:
    """The trace id in a W3C traceparent (a command's `trace`, for the logs); None when absent
    or malformed: tracing never stops a command."""
    match = TRACEPARENT.match(traceparent) if isinstance(traceparent, str) else None
    return match and match[1]


def event_items(msg: dict) -> list[dict]:
    """The events of an `events` frame, checked: seq ascending positive ints above `after`
    (optional: the seq the batch follows), known types."""
    items = msg.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_EVENTS_PER_FRAME:
        raise ProtocolError("bad_field", f"items must be a list of 1..{MAX_EVENTS_PER_FRAME}")
    after = msg.get("after", 0)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ProtocolError("bad_field", "after must be a non-negative integer")
    last = after
    for item in items:
        if not isinstance(item, dict):
            raise ProtocolError("bad_field", "each event must be a map")
        seq = item.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= last:
            raise ProtocolError("bad_field", "seq must be ascending positive integers above after")
        if item.get("type") not in EVENT_TYPES:
            raise ProtocolError("bad_field", f"unknown event type {item.get('type')!r}")
        if not isinstance(item.get("at"), (int, float)):
            raise ProtocolError("bad_field", "at must be a unix time")
        last = seq
    return items
