"""The gate decision: the one place the rules for letting someone through live.

Pure: given a token's text, the gate, the time, the public keys and the revoked
ids, `verify` says allow or deny with a reason. What a scan *consumes* (a
single-use code, one of a pass's entries) is described by `use_claim`; the
bridge consumes it offline in its local store (`decide(..., nonces=store)`),
the server atomically in Redis (models/passes.py), both from the same claim.

Imports only the standard library and gate_bridge.passes (no server deps).
"""

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gate_bridge.passes import (PLACE_SCOPED, MalformedToken, Payload, community_tag, find_key,
                                signature_valid, split)

# The fixed list of reasons, in the order the checks run.
REASONS = ("ok", "malformed", "unknown_code", "unknown_key", "wrong_community", "bad_signature",
           "not_yet_valid", "expired", "gate_not_allowed", "outside_hours", "revoked",
           "used_up", "replayed")
DEFAULT_SKEW = 5
DEFAULT_UTC_OFFSET = 8 * 60  # China Standard Time; worker hours are local time
# A pass's entry count must outlive each short-lived token shown for it.
ENTRY_COUNT_RETENTION = 8 * 86400
SHORT_CODE_DIGITS = 12


@dataclass(frozen=True)
class GateInfo:
    """What the rules need to know about the gate a code is scanned at."""

    community_id: str
    gate_id: str
    code: str
    covers: list[str] = field(default_factory=list)  # place paths; "" = whole community
    utc_offset_minutes: int = DEFAULT_UTC_OFFSET


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
        if self.payload is None or self.payload.kind in PLACE_SCOPED:
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
        # No scope entries = every gate of the community (staff codes).
        return not payload.scope or any(gate_covers(gate.covers, p) for p in payload.scope)
    return gate.code in payload.scope


def within_hours(payload: Payload, gate: GateInfo, now: float) -> bool:
    start, end = payload.hours
    quarter = int((now + gate.utc_offset_minutes * 60) % 86400 // 900)
    if start < end:
        return start <= quarter < end
    return quarter >= start or quarter < end  # a window across midnight


def verify(token_text: str, gate: GateInfo, now: float, keys: Mapping,
           revoked: Container[str], skew: int = DEFAULT_SKEW) -> Decision:
    """Everything but consumption. `keys`: {key id: public key | raw bytes | Base64}."""
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
    if payload.subject_id in revoked:
        return Decision(False, "revoked", payload)
    return Decision(True, "ok", payload)


def use_claim(payload: Payload, direction: str, skew: int = DEFAULT_SKEW) -> UseClaim | None:
    """Resident and staff codes are single-use; passes count entries ("in" only)."""
    if payload.kind in PLACE_SCOPED:
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
