"""The token format against its specification (docs/passes.md) and the QR size target."""

import re
from pathlib import Path

import base45
import pytest
import qrcode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import VerifyKey
from qrcode.util import MODE_8BIT_BYTE, MODE_ALPHA_NUM, QRData

from gate_bridge.decision import GateInfo, decide
from gate_bridge.passes import (EVERY_DAY, MalformedToken, Payload, b45encode, community_tag,
                               day_names, days_mask, fit_scope, sign, split)
from models.passes import Signer

DOC = (Path(__file__).parent.parent / "docs" / "passes.md").read_text()
SEED = bytes(range(32))
CID = "65f000000000000000000001"


def vector(name: str) -> str:
    """A value from the test-vector section, e.g. the first `token` line after a heading."""
    section = DOC[DOC.index("## 7. Test vectors"):]
    values = re.findall(rf"^{name}\s+(.+)$", section, re.M)
    return values


def doc_payloads() -> list[Payload]:
    tag = community_tag(CID)
    return [
        Payload("resident", 1, 1767225600, 1767225660, bytes.fromhex("a1b2c3d4e5f6"), tag,
                bytes.fromhex("65f0000000000000000000aa"), 0, (0, 96), ("3-2-1201",)),
        Payload("visitor", 1, 1767225600, 1767830400, bytes.fromhex("0102030405ff"), tag,
                bytes.fromhex("65f0000000000000000000bb"), 3, (32, 72), ("main", "u3-2")),
    ]


def test_documented_vectors_match_the_code():
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    assert key.public_key().public_bytes_raw().hex() in DOC
    assert community_tag(CID).hex() in DOC
    tokens, payloads = vector("token"), vector("payload")
    for payload, doc_payload, doc_token in zip(doc_payloads(), payloads, tokens, strict=True):
        assert payload.pack().hex() == doc_payload
        # Ed25519 is deterministic, so the token is fixed by key and payload.
        assert sign(payload, CID, key) == doc_token
        assert split(doc_token)[0] == payload
    assert base45.b45decode(tokens[0])[-64:].hex() == vector("signature")[0]


def test_documented_decisions_hold():
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    token = vector("token")[0]
    gate = GateInfo(CID, "g", "u3-2", ["3-2"])
    keys = {1: key.public_key()}
    assert decide(token, gate, 1767225630, keys, set()).reason == "ok"
    assert decide(token, gate, 1767225665, keys, set()).reason == "expired"
    used: set = set()

    class Store:
        def use(self, nonce, expires):
            fresh = nonce not in used
            used.add(nonce)
            return fresh

    assert decide(token, gate, 1767225630, keys, set(), Store()).reason == "ok"
    assert decide(token, gate, 1767225630, keys, set(), Store()).reason == "replayed"


def test_the_servers_signer_makes_the_documented_tokens():
    """The server signs with libsodium (models.passes.Signer): the same deterministic bytes."""
    for payload, doc_token in zip(doc_payloads(), vector("token"), strict=True):
        assert sign(payload, CID, Signer(SEED)) == doc_token


@pytest.mark.parametrize("size", [0, 1, 2, 3, 37, 100, 101, 255])
def test_base45_text_is_the_librarys(size):
    data = bytes((i * 37 + size) % 256 for i in range(size)) + b"\xff" * (size % 2)
    assert b45encode(data) == base45.b45encode(data).decode()
    assert base45.b45decode(b45encode(data)) == data


def test_pynacl_verifies_the_vector_from_the_docs_alone():
    """An independent Ed25519 (libsodium) and the rules of docs/passes.md §1, nothing of ours."""
    public_hex = re.search(r"Public key: `([0-9a-f]{64})`", DOC)[1]
    raw = base45.b45decode(vector("token")[0])
    payload, signature = raw[:-64], raw[-64:]
    message = b"XQP1" + bytes.fromhex(CID) + payload
    VerifyKey(bytes.fromhex(public_hex)).verify(message, signature)


def qr_version(data: bytes, mode: int) -> int:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(QRData(data, mode=mode))
    code.make(fit=True)
    return code.version


@pytest.mark.parametrize("rooms, scope", [
    (("1-1-101",), ("1-1-101",)),
    (("12-3-2201",), ("12-3-2201",)),
    (("1-1-101", "1-1-102"), ("1-1-101", "1-1-102")),
    (("12-3-2201", "12-3-2202"), ("12-3",)),  # too long: widened to the unit
    (("12-3-2201", "12-4-2202", "2-1-1101"), ("12-3", "12-4", "2-1")),
    (("1-1-101", "1-2-101", "1-3-101", "1-4-101", "2-1-101"), ("1", "2")),
    (("A1234567-3-2201B",), ("A1234567-3-2201B",)),  # the longest single room that fits
    (("A1234567-3-12345678",), ("A1234567-3",)),
])
def test_resident_codes_fit_qr_version_7_at_level_m(rooms, scope):
    assert fit_scope(rooms) == scope
    key = Ed25519PrivateKey.generate()
    payload = Payload("resident", 255, 4_000_000_000, 4_000_000_060, bytes(6), community_tag(CID),
                      bytes(12), 0, (0, 96), fit_scope(rooms))
    token = sign(payload, CID, key)
    assert qr_version(token.encode(), MODE_ALPHA_NUM) <= 7
    # Byte mode is ~3 % denser: at most one version smaller (and binary does not survive
    # scanners, keyboard wedges or JSON; docs/passes.md §1).
    raw = base45.b45decode(token)
    assert qr_version(raw, MODE_8BIT_BYTE) >= qr_version(token.encode(), MODE_ALPHA_NUM) - 1


def test_pack_refuses_what_it_cannot_encode():
    too_long = Payload("visitor", 1, 1, 2, bytes(6), bytes(4), bytes(12), 0, (0, 96), ("x" * 33,))
    with pytest.raises(ValueError):
        too_long.pack()


def test_working_days_are_one_optional_byte_and_every_day_is_its_absence():
    every_day = doc_payloads()[1]
    weekdays = every_day._replace(kind="worker",
                                  days=days_mask(("mon", "tue", "wed", "thu", "fri")))
    assert weekdays.pack() == every_day._replace(kind="worker").pack() + b"\x1f"
    assert Payload.unpack(weekdays.pack()) == weekdays
    assert Payload.unpack(every_day.pack()).days == EVERY_DAY  # a pass made before days
    assert day_names(0x3f) == ["mon", "tue", "wed", "thu", "fri", "sat"]
    for bad in (b"\x00", b"\x7f", b"\x80", b"\x1f\x1f"):  # every day has one encoding
        with pytest.raises(MalformedToken):
            Payload.unpack(every_day.pack() + bad)
    with pytest.raises(ValueError):
        every_day._replace(days=0).pack()
