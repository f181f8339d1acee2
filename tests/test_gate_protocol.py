"""The gate wire format, handshake proofs and the bridge's local store (no network)."""

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_bridge import protocol as p
from gate_bridge import wire
from gate_bridge.store import Store


@pytest.mark.parametrize("codec", wire.CODECS)
def test_frames_round_trip_when_fed_byte_by_byte(codec):
    messages = [p.message(p.HEARTBEAT, t=1.5), p.message(p.SCAN, id="s1", text="码 QR", direction="in")]
    stream = b"".join(wire.encode(m, codec) for m in messages)
    payloads, rest = [], b""
    for i in range(len(stream)):
        complete, rest = wire.split(rest + stream[i:i + 1])
        payloads += complete
    assert [wire.decode_payload(x) for x in payloads] == [(m, codec) for m in messages]
    assert rest == b""


def test_bytes_travel_as_bin_in_msgpack_and_hex_in_json():
    nonce = bytes(range(16))
    for codec in wire.CODECS:
        msg, _ = wire.decode_payload(wire.encode(p.message(p.HELLO, nonce=nonce), codec)[4:])
        assert p.as_bytes(msg["nonce"], "nonce") == nonce
    with pytest.raises(p.ProtocolError):
        p.as_bytes("not hex", "nonce")


def test_oversized_frame_is_refused_before_reading_it():
    with pytest.raises(wire.FrameTooLarge):
        wire.split(struct.pack(">I", 1025), max_frame=1024)


@pytest.mark.parametrize("payload", [b"\xc1", b"{not json", msgpack.packb([1, 2]),
                                     msgpack.packb({"op": 3}), b"{\"no_op\": 1}"])
def test_garbage_payload_is_bad_payload(payload):
    with pytest.raises(wire.BadPayload):
        wire.decode_payload(payload)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(data):
    try:
        payloads, _ = wire.split(data, max_frame=256)
    except wire.FrameTooLarge:
        return
    for payload in payloads:
        try:
            msg, _ = wire.decode_payload(payload)
        except wire.BadPayload:
            continue
        assert isinstance(msg["op"], str)


def test_version_negotiation_picks_the_highest_common():
    assert p.negotiate([1, 7]) == 1
    for offered in ([], [99], "1", None):
        with pytest.raises(p.ProtocolError):
            p.negotiate(offered)


def test_proofs_bind_both_nonces_role_and_bridge():
    key = p.derive_key(p.new_secret())
    bn, sn = p.new_nonce(), p.new_nonce()
    proof = p.bridge_proof(key, "br-1", bn, sn)
    assert p.proof_ok(proof, p.bridge_proof(key, "br-1", bn, sn))
    # Replayed into a session with a fresh server nonce, the old proof is worthless.
    assert not p.proof_ok(proof, p.bridge_proof(key, "br-1", bn, p.new_nonce()))
    # The server's proof cannot be reflected back as the bridge's, nor used for another bridge.
    assert not p.proof_ok(p.server_proof(key, "br-1", bn, sn), proof)
    assert not p.proof_ok(proof, p.bridge_proof(key, "br-2", bn, sn))
    assert not p.proof_ok(proof, p.bridge_proof(p.derive_key(p.new_secret()), "br-1", bn, sn))


def test_secret_and_key_never_appear_in_handshake_frames():
    secret = p.new_secret()
    key = p.derive_key(secret)
    bn, sn = p.new_nonce(), p.new_nonce()
    frames = wire.encode(p.message(p.HELLO, bridge="br-1", nonce=bn), "json") + wire.encode(
        p.message(p.AUTH, proof=p.bridge_proof(key, "br-1", bn, sn)), "msgpack")
    for needle in (secret.encode(), key, key.hex().encode()):
        assert needle not in frames


def test_commands_expire_after_their_ttl():
    cid, issued, ttl = p.command_fields({"id": "c1", "issued_at": 100.0, "ttl": 5})
    assert (cid, issued, ttl) == ("c1", 100.0, 5.0)
    assert not p.expired(issued, ttl, 105.0)
    assert p.expired(issued, ttl, 105.01)
    with pytest.raises(p.ProtocolError):
        p.command_fields({"id": "", "issued_at": 1})


def test_event_batches_need_ascending_seq_and_known_types():
    ok = {"items": [{"seq": 1, "type": "door_opened", "at": 1.0}, {"seq": 3, "type": "tamper", "at": 2}]}
    assert len(p.event_items(ok)) == 2
    for bad in ({"items": []}, {"items": [{"seq": 2, "type": "door_opened", "at": 1},
                                          {"seq": 2, "type": "door_opened", "at": 1}]},
                {"items": [{"seq": 1, "type": "explode", "at": 1}]},
                {"items": [{"seq": True, "type": "tamper", "at": 1}]}):
        with pytest.raises(p.ProtocolError):
            p.event_items(bad)


# -- the bridge's SQLite store -------------------------------------------------------------------

@pytest.fixture
def open_store(tmp_path):
    """Store(path, ...) that is closed after the test (sqlite warns about open handles)."""
    opened = []

    def open_(name="b.sqlite", **kw):
        opened.append(Store(str(tmp_path / name), **kw))
        return opened[-1]
    yield open_
    for store in opened:
        store.close()


def test_events_survive_reopening_and_are_forgotten_once_acknowledged(open_store):
    store = open_store()
    seqs = [store.append_event("door_opened", 1.0 + i) for i in range(3)]
    store.close()
    store = open_store()
    assert [e["seq"] for e in store.unacked(0, 10)] == seqs
    store.ack_upto(seqs[1])
    assert [e["seq"] for e in store.unacked(0, 10)] == seqs[2:]
    assert store.acked_seq == seqs[1]
    # seq keeps growing after acknowledged rows are deleted
    assert store.append_event("door_closed", 5.0) > seqs[-1]


def test_event_buffer_is_bounded_and_counts_what_it_dropped(open_store):
    store = open_store(max_events=5)
    for i in range(8):
        store.append_event("door_opened", float(i))
    assert [e["at"] for e in store.unacked(0, 10)] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert store.dropped == 3
    assert store.fill_ratio == 1.0


def test_nonces_are_used_once_even_across_a_restart(open_store):
    store = open_store()
    assert store.use(b"n1", 100.0)
    assert not store.use(b"n1", 100.0)
    store.add_used([(b"n2", 100.0)])
    store.close()
    store = open_store()
    assert not store.use(b"n2", 100.0)
    store.prune(now=200.0)
    assert store.use(b"n1", 300.0)  # expired ones are forgotten


def test_a_command_id_is_claimed_once(open_store):
    store = open_store()
    assert store.claim_command("c1", p.RECEIVED, 1.0)
    assert not store.claim_command("c1", p.RECEIVED, 2.0)
    store.set_command_level("c1", p.OPENED)
    assert store.command_level("c1") == p.OPENED
