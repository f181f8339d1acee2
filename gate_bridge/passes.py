"""The pass token: a compact payload, signed with Ed25519, encoded in Base45.

Shared by the server (which signs) and the gate bridge (which verifies offline),
so it imports only the standard library, `cryptography` and `base45`.
`docs/passes.md` is the specification; keep the two in step.

    token    = Base45(payload || signature)            QR alphanumeric mode
    signed   = b"XQP1" || community id (12 bytes) || payload
    payload  = fixed 37-byte header || scope entries [|| working days]   (below, big-endian)

Binding the full community id into the signature (not just the 4-byte tag the
payload carries) means a tag collision between two communities can never let a
code of one open a gate of the other.
"""

import base64
import functools
import hashlib
import operator
import struct
from collections.abc import Mapping
from typing import NamedTuple

import base45
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VERSION = 1
CONTEXT = b"XQP1"
SIGNATURE_BYTES = 64
NONCE_BYTES = 6
ID_BYTES = 12
# version, kind, key id, not_before, expires, nonce, community tag, subject,
# max entries, hours start, hours end, scope count
HEADER = struct.Struct(">BBBII6s4s12sBBBB")
QUARTERS_PER_DAY = 96
MAX_SCOPE_ENTRY = 32
# Working days: one optional byte after the scope, bit 0 = Monday ... bit 6 = Sunday. Every
# day is its absence (the one encoding of it), so passes made before it stay valid as they
# are, and a verifier that does not know the byte refuses such a pass (trailing bytes) rather
# than letting a worker in on a day off.
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = (1 << len(WEEKDAYS)) - 1

KINDS = {1: "resident", 2: "visitor", 3: "worker", 4: "staff"}
KIND_CODES = {name: code for code, name in KINDS.items()}
# Kinds minted per person for a minute (single-use, no pass behind them).
CODE_KINDS = frozenset({"resident", "staff"})
# Scope entries: place paths for residents (a gate must cover one), staff roles for staff
# (a gate must let one of them through), gate codes for visitor and worker passes.
PLACE_SCOPED = frozenset({"resident"})


class MalformedToken(ValueError):
    """The text is not a well-formed version-1 token (any structural problem)."""


def days_mask(names) -> int:
    """("mon", "fri") -> 0b10001; None = every day."""
    if names is None:
        return EVERY_DAY
    mask = 0
    for name in names:
        mask |= 1 << WEEKDAYS.index(name)
    return mask


def day_names(mask: int) -> list[str]:
    return [name for i, name in enumerate(WEEKDAYS) if mask >> i & 1]


def valid_hours(start: int, end: int) -> bool:
    """A daily window in quarter hours; start > end runs across midnight."""
    return 0 <= start < QUARTERS_PER_DAY and 0 < end <= QUARTERS_PER_DAY and start != end


class Payload(NamedTuple):
    """Immutable like a frozen dataclass, for a fifth of its construction (every code issued
    and every scan builds one; `_replace` is dataclasses.replace)."""

    kind: str
    key_id: int
    not_before: int
    expires: int
    nonce: bytes
    community_tag: bytes
    subject: bytes
    max_entries: int = 0  # 0 = unlimited
    hours: tuple[int, int] = (0, QUARTERS_PER_DAY)  # daily window in quarter hours, local time
    scope: tuple[str, ...] = ()
    days: int = EVERY_DAY  # working days (WEEKDAYS bits), local time

    @property
    def subject_id(self) -> str:
        return self.subject.hex()

    def pack(self) -> bytes:
        # A window ending at midnight ("20:00"-"00:00") ends at the day's last quarter: the
        # format keeps 0 for a start only, and a pass its own decoder refuses must not be issued.
        start, end = self.hours[0], self.hours[1] or QUARTERS_PER_DAY
        if not valid_hours(start, end):
            raise ValueError(f"bad daily hours {self.hours}")
        if not 0 < self.days <= EVERY_DAY:
            raise ValueError(f"bad working days {self.days:#x}")
        data = HEADER.pack(VERSION, KIND_CODES[self.kind], self.key_id, self.not_before,
                           self.expires, self.nonce, self.community_tag, self.subject,
                           self.max_entries, start, end, len(self.scope))
        data += _packed_scope(self.scope)
        return data if self.days == EVERY_DAY else data + bytes((self.days,))

    @classmethod
    def unpack(cls, data: bytes) -> "Payload":
        if len(data) < HEADER.size:
            raise MalformedToken("payload too short")
        (version, kind, key_id, not_before, expires, nonce, tag, subject, max_entries,
         start, end, count) = HEADER.unpack_from(data)
        if version != VERSION:
            raise MalformedToken(f"unsupported version {version}")
        if kind not in KINDS:
            raise MalformedToken(f"unknown kind {kind}")
        if not valid_hours(start, end):
            raise MalformedToken("bad hours")
        if expires <= not_before:
            raise MalformedToken("expires before it starts")
        scope, offset = [], HEADER.size
        for _ in range(count):
            if offset >= len(data):
                raise MalformedToken("scope truncated")
            size = data[offset]
            entry = data[offset + 1: offset + 1 + size]
            if len(entry) != size or size > MAX_SCOPE_ENTRY:
                raise MalformedToken("scope entry truncated")
            try:
                scope.append(entry.decode())
            except UnicodeDecodeError:
                raise MalformedToken("scope entry is not UTF-8") from None
            offset += 1 + size
        days = EVERY_DAY
        if offset == len(data) - 1:
            days = data[offset]
            if not 0 < days < EVERY_DAY:  # every day is the byte's absence
                raise MalformedToken("bad working days")
        elif offset != len(data):
            raise MalformedToken("trailing bytes after the scope")
        return cls(KINDS[kind], key_id, not_before, expires, nonce, tag, subject, max_entries,
                   (start, end), tuple(scope), days)


@functools.lru_cache(maxsize=4096)  # a person's codes all carry the same scope
def _packed_scope(scope: tuple[str, ...]) -> bytes:
    entries = [s.encode() for s in scope]
    if any(len(e) > MAX_SCOPE_ENTRY for e in entries) or len(entries) > 255:
        raise ValueError("scope entries must be at most 32 bytes, at most 255 of them")
    return b"".join(bytes([len(e)]) + e for e in entries)


# Payload bytes that keep a token within QR version 7 at level M (178 alphanumeric
# characters = 118 bytes of Base45, less the signature).
QR_PAYLOAD_BUDGET = 118 - SIGNATURE_BYTES


@functools.lru_cache(maxsize=4096)  # a resident's rooms are the same for each of their codes
def fit_scope(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Place paths for a code: as given if they fit the QR budget, else widened to their
    units, then buildings. Widening only loses gates covering a single room, never adds any:
    a gate covering a unit covers the unit path."""
    scope = tuple(sorted(set(paths)))
    while HEADER.size + sum(1 + len(p.encode()) for p in scope) > QR_PAYLOAD_BUDGET:
        shorter = tuple(sorted({p.rsplit("-", 1)[0] for p in scope}))
        if shorter == scope:
            break
        scope = shorter
    return scope


def community_bytes(community_id: str) -> bytes:
    """The 12-byte community id (its API form is these bytes in hex)."""
    raw = bytes.fromhex(community_id)
    if len(raw) != ID_BYTES:
        raise ValueError("a community id is 24 hex digits")
    return raw


@functools.lru_cache(maxsize=1024)
def community_tag(community_id: str) -> bytes:
    return hashlib.sha256(community_bytes(community_id)).digest()[:4]


@functools.lru_cache(maxsize=1024)
def _message_prefix(community_id: str) -> bytes:
    return CONTEXT + community_bytes(community_id)


def signed_message(community_id: str, payload_bytes: bytes) -> bytes:
    return _message_prefix(community_id) + payload_bytes


def sign(payload: Payload, community_id: str, private_key: Ed25519PrivateKey) -> str:
    """The token text for `payload`, issued in `community_id` (the key: anything whose
    `sign(message)` gives the 64-byte Ed25519 signature, e.g. models.passes.Signer)."""
    data = payload.pack()
    signature = private_key.sign(signed_message(community_id, data))
    return b45encode(data + signature)


@functools.cache
def _base45_words() -> list[str]:
    """The three Base45 digits of every 16-bit word (RFC 9285: least significant first).
    Built on the first signature (bridges only verify): 3 MB, and the encoding of a code
    a table lookup per word, a quarter of the `base45` package's divmod loop."""
    pairs = [low + high for high in base45.BASE45_CHARSET for low in base45.BASE45_CHARSET]
    return [pairs[word % 2025] + base45.BASE45_CHARSET[word // 2025] for word in range(65536)]


@functools.lru_cache(maxsize=64)
def _words_of(count: int) -> struct.Struct:
    return struct.Struct(f">{count}H")


def b45encode(data: bytes) -> str:
    """`base45.b45encode(data).decode()`, faster (the issuing of every code runs it)."""
    words = _base45_words()
    pairs = _words_of(len(data) // 2).unpack_from(data)
    # itemgetter looks them all up in one call (half of map's instructions); with one
    # index it gives the digits themselves, which join leaves as they are
    text = "".join(operator.itemgetter(*pairs)(words)) if pairs else ""
    # a trailing odd byte is two digits: the word table's first 256 entries less their "0"
    return text + words[data[-1]][:2] if len(data) & 1 else text


@functools.lru_cache(maxsize=1024)  # a scan is parsed by several steps; results are immutable
def split(token_text: str) -> tuple[Payload, bytes, bytes]:
    """(payload, payload bytes, signature) of a token, not yet verified. Raises MalformedToken."""
    try:
        raw = base45.b45decode(token_text.strip("\r\n"))  # spaces are Base45 digits
    except (ValueError, TypeError, UnicodeError) as exc:
        raise MalformedToken(f"not Base45: {exc}") from None
    if len(raw) < HEADER.size + SIGNATURE_BYTES:
        raise MalformedToken("token too short")
    data, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
    return Payload.unpack(data), data, signature


def signature_valid(public_key: Ed25519PublicKey, community_id: str, data: bytes,
                    signature: bytes) -> bool:
    try:
        public_key.verify(signature, signed_message(community_id, data))
    except InvalidSignature:
        return False
    return True


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def publish_key(key: Ed25519PublicKey) -> str:
    """A public key as published to bridges: standard Base64 of the 32 raw bytes."""
    return base64.b64encode(raw_public_key(key)).decode("ascii")


@functools.lru_cache(maxsize=256)
def _load_public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key(value: "Ed25519PublicKey | bytes | str") -> Ed25519PublicKey:
    """A public key from an object, its 32 raw bytes, or their Base64 (the config push form)."""
    if isinstance(value, Ed25519PublicKey):
        return value
    raw = base64.b64decode(value, validate=True) if isinstance(value, str) else bytes(value)
    return _load_public(raw)


def find_key(keys: Mapping, key_id: int) -> Ed25519PublicKey | None:
    """Look a key id up in {id: key}, where ids may be ints or (from JSON) strings."""
    value = keys.get(key_id)
    if value is None:
        value = keys.get(str(key_id))
    if value is None:
        return None
    try:
        return public_key(value)
    except ValueError:  # a corrupt published key cannot verify anything
        return None
