"""The gate decision: the one place the rules for letting someone through live.

Pure: given a token's text, the gate, the time, the public keys and the revoked
ids, `verify` says allow or deny with a reason. The gate's own rules (its emergency
mode and open hours, `gate_refusal`) are part of it, on every path: the staff
scanner check, the hub's scan, a remote open, the bridge deciding offline, and the
server re-checking what a bridge decided offline. What a scan *consumes* (a
single-use code, one of a pass's entries) is described by `use_claim`; the
bridge consumes it offline in its local store (`decide(..., nonces=store)`),
the server atomically in Redis (models/passes.py), both from the same claim.

Local time (gate hours, a pass's daily window and working days) is the wall clock of the community's IANA
time zone, read with zoneinfo on both sides (`local_minute`), so a daylight-saving change
needs no new config: the bridge is pushed the zone's name, not an offset.

Imports only the standard library and gate_bridge.passes (no server deps).
"""

from collections.abc import Container, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gate_bridge.protocol import DEFAULT_PULSE_MS, MODES
from gate_bridge.passes import (CODE_KINDS, EVERY_DAY, PLACE_SCOPED, MalformedToken, Payload,
                                community_tag, find_key, signature_valid, split)

# The fixed list of reasons, in the order the checks run.
REASONS = ("ok", "malformed", "unknown_code", "unknown_key", "wrong_community", "bad_signature",
           "not_yet_valid", "expired", "gate_not_allowed", "outside_hours", "outside_days",
           "revoked",
           "locked", "gate_closed", "used_up", "replayed")
DEFAULT_SKEW = 5
DEFAULT_TIME_ZONE = "Asia/Shanghai"  # a community's zone unless it says otherwise
# A pass's entry count must outlive each short-lived token shown for it.
ENTRY_COUNT_RETENTION = 8 * 86400
SHORT_CODE_DIGITS = 12

# A gate's rules and their defaults (the one place): pushed to its bridge as `rules`.
# hours: local open hours [["06:00", "23:00"], ...] (None = always open); staff codes pass
# outside them. lockdown_staff: whether staff codes still open the gate in lockdown.
# staff_roles: the staff roles whose codes open the gate; None = the community's
# `settings.staff_gate_roles`, else STAFF_GATE_ROLES (the server pushes the list it resolved).
DEFAULT_RULES = {"hours": None, "budget_ms": 300, "pulse_ms": DEFAULT_PULSE_MS,
                 "lockdown_staff": True, "staff_roles": None}
# Guards and managers; maintenance, customer service and admins only where a community or
# a gate names them (a staff code is a key to the gate, not a perk of being on staff).
STAFF_GATE_ROLES = ("manager", "security", "security_lead")
# Emergency modes, lowest rank first. A gate's effective mode is the highest-ranked of its
# own mode, its community's mode and a local fire-panel input (which can only say "open"):
#   community open   > gate open   (fire release: free passage wins, life safety first)
#   > community locked > gate locked (lockdown: only staff codes the plan allows)
#   > normal
# Rank alone decides; the level (gate or community) only breaks ties, which give the
# same mode anyway. So a community-wide fire release outranks a gate's lockdown, and a
# gate's fire release outranks a community lockdown.
MODE_RANK = {mode: rank for rank, mode in enumerate(MODES)}


def effective_mode(*modes: str | None) -> str:
    """The mode that rules a gate, from every mode that applies to it (None: not set)."""
    return max((m for m in modes if m), key=MODE_RANK.__getitem__, default="normal")


def minute_of_day(hhmm: str) -> int:
    """"06:30" -> 390; "24:00" -> 1440."""
    hours, minutes = (int(x) for x in hhmm.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60 and hours * 60 + minutes <= 1440):
        raise ValueError(f"bad time of day {hhmm!r}")
    return hours * 60 + minutes


@dataclass(frozen=True)
class GateInfo:
    """What the rules need to know about the gate a code is scanned at."""

    community_id: str
    gate_id: str
    code: str
    covers: list[str] = field(default_factory=list)  # place paths; "" = whole community
    time_zone: str = DEFAULT_TIME_ZONE  # IANA name: gate hours and pass windows are local
    mode: str = "normal"  # the effective emergency mode (effective_mode)
    hours: tuple[tuple[str, str], ...] | None = None  # the gate's open hours, local time
    lockdown_staff: bool = True
    staff_roles: frozenset[str] = frozenset(STAFF_GATE_ROLES)  # whose staff codes open it


# The GateInfo fields a config push's `gate` section carries (the rest come from `rules`).
_GATE_SECTION = frozenset(f.name for f in fields(GateInfo)) - {"mode", "hours", "lockdown_staff",
                                                               "staff_roles"}


def gate_info(gate: Mapping, rules: Mapping | None = None, *modes: str | None) -> GateInfo:
    """GateInfo from a config push's `gate` and `rules` sections (what the server pushes is
    what both sides decide with); `modes`: further modes that apply (a local fire input)."""
    rules = {**DEFAULT_RULES, **(rules or {})}
    hours = rules["hours"]
    return GateInfo(**{k: v for k, v in gate.items() if k in _GATE_SECTION},
                    mode=effective_mode(rules.get("mode"), *modes),
                    hours=tuple(tuple(w) for w in hours) if hours else None,
                    lockdown_staff=bool(rules["lockdown_staff"]),
                    staff_roles=frozenset(STAFF_GATE_ROLES if rules["staff_roles"] is None
                                          else rules["staff_roles"]))


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    payload: Payload | None = None

    @property
    def kind(self) -> str | None:
        return self.payload and self.payload.kind

    @property
    def subject(self) -> str | None:
        return self.payload and self.payload.subject_id

    @property
    def pass_id(self) -> str | None:
        """Visitor and worker passes are their subject; resident/staff codes have no pass."""
        if self.payload is None or self.payload.kind in CODE_KINDS:
            return None
        return self.payload.subject_id


@dataclass(frozen=True)
class UseClaim:
    """What an allowed scan uses up: one of `limit` slots under `key`, kept until `expires`."""

    key: bytes
    limit: int
    expires: float
    exhausted: str  # the deny reason once every slot is taken

    def slot_key(self, slot: int) -> bytes:
        return self.key if self.limit == 1 else self.key + bytes([slot])


class NonceStore(Protocol):
    def use(self, nonce: bytes, expires: float) -> bool:
        """Mark used; False if it already was."""


def is_short_code(text: str) -> bool:
    """The numeric profile: only the server can resolve it (docs/passes.md)."""
    return text.isascii() and text.isdigit() and len(text) == SHORT_CODE_DIGITS


def normalize(text: str) -> str:
    """A scan as the rules read it: without the CR/LF (or tab) a reader appends; a short code
    also without spaces. A Base45 token keeps its spaces: space is one of its letters."""
    text = text.strip("\r\n\t")
    compact = "".join(text.split())
    return compact if is_short_code(compact) else text


def gate_covers(gate_paths: list[str], place_path: str) -> bool:
    """A gate covering "3" covers "3", "3-2" and "3-2-1201"; "" covers everything."""
    place = place_path.split("-") if place_path else []
    for path in gate_paths:
        prefix = path.split("-") if path else []
        if place[: len(prefix)] == prefix:
            return True
    return False


def gate_allowed(payload: Payload, gate: GateInfo) -> bool:
    if payload.kind in PLACE_SCOPED:
        return any(gate_covers(gate.covers, p) for p in payload.scope)
    if payload.kind == "staff":  # the holder's roles: one must be among the gate's
        return not gate.staff_roles.isdisjoint(payload.scope)
    return gate.code in payload.scope


def zone_info(name: str) -> ZoneInfo:
    """The zone named; ValueError when this machine's zoneinfo (system or the tzdata
    package) does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}") from None


def local_time(now: float, zone: str) -> datetime:
    """The zone's wall clock at `now` (Unix time). Across a daylight-saving change it jumps
    or repeats, and so does everything read from it."""
    return datetime.fromtimestamp(now, zone_info(zone))


def local_minute(now: float, zone: str) -> int:
    """Minutes since local midnight at `now`."""
    local = local_time(now, zone)
    return local.hour * 60 + local.minute


def within_hours(payload: Payload, gate: GateInfo, now: float) -> bool:
    start, end = payload.hours
    quarter = local_minute(now, gate.time_zone) // 15
    if start < end:
        return start <= quarter < end
    return quarter >= start or quarter < end  # a window across midnight


def on_working_day(payload: Payload, gate: GateInfo, now: float) -> bool:
    """The local weekday is one of the pass's days. The hours after midnight of a window
    across midnight belong to the day the window started (Friday 22:00–02:00 is a Friday)."""
    if payload.days == EVERY_DAY:
        return True
    local = local_time(now, gate.time_zone)
    start, end = payload.hours
    day = local.weekday()
    if start > end and (local.hour * 60 + local.minute) // 15 < end:
        day = (day - 1) % 7
    return bool(payload.days >> day & 1)


def within_gate_hours(gate: GateInfo, now: float) -> bool:
    if not gate.hours:
        return True
    minute = local_minute(now, gate.time_zone)
    for start, end in gate.hours:
        first, last = minute_of_day(start), minute_of_day(end)
        if (first <= minute < last) if first <= last else (minute >= first or minute < last):
            return True
    return False


def gate_refusal(kind: str, gate: GateInfo, now: float) -> str | None:
    """The gate's own rules for a credential of `kind` ("resident", "visitor", "worker",
    "staff"; a remote open counts as its caller's kind): the deny reason, or None."""
    if gate.mode == "locked" and not (kind == "staff" and gate.lockdown_staff):
        return "locked"
    if kind != "staff" and gate.mode != "open" and not within_gate_hours(gate, now):
        return "gate_closed"
    return None


def verify(token_text: str, gate: GateInfo, now: float, keys: Mapping,
           revoked: Container[str], skew: int = DEFAULT_SKEW) -> Decision:
    """Everything but consumption. `keys`: {key id: public key | raw bytes | Base64}."""
    token_text = normalize(token_text)
    if is_short_code(token_text):
        return Decision(False, "unknown_code")
    try:
        payload, data, signature = split(token_text)
    except MalformedToken:
        return Decision(False, "malformed")
    key = find_key(keys, payload.key_id)
    if key is None:
        return Decision(False, "unknown_key")
    if payload.community_tag != community_tag(gate.community_id):
        return Decision(False, "wrong_community")
    if not signature_valid(key, gate.community_id, data, signature):
        return Decision(False, "bad_signature")
    if now < payload.not_before - skew:
        return Decision(False, "not_yet_valid", payload)
    if now >= payload.expires + skew:
        return Decision(False, "expired", payload)
    if not gate_allowed(payload, gate):
        return Decision(False, "gate_not_allowed", payload)
    if not within_hours(payload, gate, now):
        return Decision(False, "outside_hours", payload)
    if not on_working_day(payload, gate, now):
        return Decision(False, "outside_days", payload)
    if payload.subject_id in revoked:
        return Decision(False, "revoked", payload)
    refusal = gate_refusal(payload.kind, gate, now)
    if refusal:
        return Decision(False, refusal, payload)
    return Decision(True, "ok", payload)


def use_claim(payload: Payload, direction: str, skew: int = DEFAULT_SKEW) -> UseClaim | None:
    """Resident and staff codes are single-use; passes count entries ("in" only)."""
    if payload.kind in CODE_KINDS:
        return UseClaim(payload.subject + payload.nonce, 1, payload.expires + skew, "replayed")
    if direction == "in" and payload.max_entries:
        return UseClaim(payload.subject, payload.max_entries,
                        payload.expires + skew + ENTRY_COUNT_RETENTION, "used_up")
    return None


def consume(claim: UseClaim, nonces: NonceStore) -> bool:
    """Take a free slot of the claim in a local store; False when none is left."""
    return any(nonces.use(claim.slot_key(slot), claim.expires) for slot in range(claim.limit))


def decide(token_text: str, gate: GateInfo, now: float, keys: Mapping, revoked: Container[str],
           nonces: NonceStore | None = None, *, direction: str = "in",
           skew: int = DEFAULT_SKEW) -> Decision:
    """The full decision; with `nonces=None` only the pure part (the server consumes in Redis)."""
    decision = verify(token_text, gate, now, keys, revoked, skew)
    if nonces is None or not decision.allow:
        return decision
    claim = use_claim(decision.payload, direction, skew)
    if claim is not None and not consume(claim, nonces):
        return Decision(False, claim.exhausted, decision.payload)
    return decision
