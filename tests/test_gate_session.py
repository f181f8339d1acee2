"""The sans-I/O session of both roles, pumped into each other without sockets; the
handshake test vectors of docs/gate-protocol.md are checked here."""

import hashlib
import hmac
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gate_bridge import protocol as p
from gate_bridge import wire
from gate_bridge.session import (BAD_FRAME_LIMIT, BAD_FRAME_WINDOW, HEARTBEAT_DUE, Authenticated,
                                 BridgeSession, Challenged, Closed, Hello, Limits, Received,
                                 ServerSession, Welcomed)

DOC = Path(__file__).parent.parent / "docs" / "gate-protocol.md"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pump(source, target) -> list:
    return target.receive_data(source.data_to_send())


def connected(codec="msgpack", secret=None, known=True):
    """(server, bridge, clock, events) after a handshake run by the two sessions."""
    clock = Clock()
    limits = Limits(heartbeat=10, handshake_timeout=5, read_timeout=5, clock=clock)
    key = p.derive_key(secret or p.new_secret())
    server, bridge = ServerSession(limits), BridgeSession(limits, "br-1", key, codec)
    bridge.hello(firmware="test", caps=[], last_seq=0, config_version=None)
    [hello] = pump(bridge, server)
    assert isinstance(hello, Hello) and (hello.bridge, hello.version) == ("br-1", 1)
    server.challenge(key if known else None)
    events = pump(server, bridge)
    if isinstance(events[0], Challenged):
        events = pump(bridge, server)
        if isinstance(events[0], Authenticated):
            server.welcome(123.0, "v1")
            events = pump(server, bridge)
    return server, bridge, clock, events


@pytest.mark.parametrize("codec", wire.CODECS)
def test_the_two_roles_authenticate_each_other_and_exchange_checked_frames(codec):
    server, bridge, _, [welcome] = connected(codec)
    assert isinstance(welcome, Welcomed) and welcome.message["config_version"] == "v1"
    assert server.ready and bridge.ready and server.codec == codec
    bridge.send(p.message(p.SCAN, id="s1", text="code"))
    [scan] = pump(bridge, server)
    assert scan == Received(p.SCAN, {"op": p.SCAN, "id": "s1", "text": "code", "direction": "in"})
    server.send(p.message(p.EVENTS_ACK, upto=3))
    assert pump(server, bridge) == [Received(p.EVENTS_ACK, {"op": p.EVENTS_ACK, "upto": 3})]


def test_a_server_without_the_key_gets_no_proof_and_a_wrong_proof_no_session():
    _, bridge, _, [closed] = connected(known=False)
    assert closed == Closed("server_auth_failed", "server proof does not match")
    assert bridge.data_to_send() == b""  # the bridge revealed nothing
    clock = Clock()
    limits = Limits(clock=clock)
    server = ServerSession(limits)
    bridge = BridgeSession(limits, "br-1", p.derive_key(p.new_secret()))
    bridge.hello()
    pump(bridge, server)
    server.challenge(p.derive_key(p.new_secret()))  # the server knows another key
    bridge.receive_data(server.data_to_send())
    server.receive_data(wire.encode(p.message(p.AUTH, proof=bridge.proof())))
    assert server.closed and server.closed_by.code == "auth_failed"
    assert wire.decode_payload(server.data_to_send()[4:])[0]["code"] == "auth_failed"


def test_unknown_ops_are_answered_but_only_bad_frames_count_within_a_window():
    server, bridge, clock, _ = connected()
    for _ in range(50):  # a newer firmware's optional op, once per event
        bridge.send(p.message("door_telemetry", volts=12.1))
    assert pump(bridge, server) == [] and not server.closed
    replies, rest = wire.split(server.data_to_send())
    assert len(replies) == 50 and wire.decode_payload(replies[0])[0]["code"] == "unknown_op"
    bad = p.message(p.SCAN, id="", text="x")  # a known op with a bad field
    for _ in range(BAD_FRAME_LIMIT):
        bridge.send(bad)
    pump(bridge, server)
    clock.now += BAD_FRAME_WINDOW + 1  # the window is over: the count starts again
    for _ in range(BAD_FRAME_LIMIT):
        bridge.send(bad)
    assert pump(bridge, server) == [] and not server.closed
    server.data_to_send()
    server.receive_data(wire.HEADER.pack(1) + b"\xc1")  # undecodable: bad too
    assert server.closed and server.closed_by.code == "too_many_errors"
    last = wire.split(server.data_to_send())[0][-1]
    assert wire.decode_payload(last)[0]["code"] == "too_many_errors"


def test_a_config_naming_a_zone_the_box_does_not_know_is_refused_with_an_error_frame():
    server, bridge, _, _ = connected()
    config = {"version": "v2", "keys": {}, "gate": {"code": "main", "time_zone": "Mars/Olympus"}}
    server.send(p.message(p.CONFIG, **config))
    assert pump(server, bridge) == []  # not handed to the bridge program: its last config stays
    [error] = wire.split(bridge.data_to_send())[0]
    assert wire.decode_payload(error)[0]["code"] == "bad_field"
    server.send(p.message(p.CONFIG, **{**config, "gate": {"time_zone": "Europe/Berlin"}}))
    [received] = pump(server, bridge)
    assert received.message["gate"]["time_zone"] == "Europe/Berlin"


def test_heartbeats_fall_due_and_silence_ends_the_session():
    server, bridge, clock, _ = connected()
    assert server.tick(clock.now) == []
    clock.now += 10
    assert server.tick(clock.now) == [HEARTBEAT_DUE]
    bridge.send(p.message(p.HEARTBEAT, t=clock.now))
    pump(bridge, server)
    clock.now += 29
    server.send(p.message(p.HEARTBEAT, t=clock.now))
    assert server.tick(clock.now) == []
    clock.now += 2  # 31 s without a frame from the bridge: 3 intervals missed
    [closed] = server.tick(clock.now)
    assert closed.code == "heartbeat_lost" and server.closed


def test_a_session_that_does_not_authenticate_in_time_is_closed():
    clock = Clock()
    server = ServerSession(Limits(handshake_timeout=5, clock=clock))
    clock.now += 5.1
    assert [e.code for e in server.tick(clock.now)] == ["auth_timeout"]


def test_bye_ends_the_session_with_its_reason():
    server, bridge, _, _ = connected()
    server.bye("reprovisioned")
    [closed] = pump(server, bridge)
    assert closed == Closed("reprovisioned", "the peer said bye", by_peer=True) and bridge.closed


@pytest.mark.parametrize("retry_after, kept", [(1.5, 1.5), (0, None), (10_000, None),
                                                ("soon", None), (True, None)])
def test_a_busy_hub_refuses_the_hello_at_once_and_names_when_to_come_back(retry_after, kept):
    clock = Clock()
    limits = Limits(clock=clock)
    server, bridge = ServerSession(limits), BridgeSession(limits, "br-1", p.derive_key(
        p.new_secret()))
    bridge.hello(firmware="test", caps=[], last_seq=0)
    assert isinstance(pump(bridge, server)[0], Hello)
    server.busy(1.5)
    assert server.closed
    frame = wire.decode_payload(wire.split(server.data_to_send(), wire.MAX_FRAME)[0][0])[0]
    assert (frame["code"], frame["retry_after"]) == ("busy", 1.5)
    [closed] = bridge.receive_data(wire.encode({**frame, "retry_after": retry_after}))
    assert (closed.code, closed.by_peer, closed.retry_after) == ("busy", True, kept)
    assert bridge.closed


def test_handshake_vectors_in_the_protocol_document():
    """The document's worked example, recomputed here from its inputs."""
    secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"  # bytes 0x00..0x1f
    bridge_id = "br-0a1b2c3d4e5f"
    bridge_nonce, server_nonce = bytes(range(0x20, 0x30)), bytes(range(0x30, 0x40))
    key = p.derive_key(secret)
    assert key == hashlib.sha256(b"xiaoqu-gate-key/1" + bytes(range(32))).digest()
    server_input = b"xiaoqu-gate/1|server|" + bridge_id.encode() + b"|" + bridge_nonce + b"|" + server_nonce
    bridge_input = b"xiaoqu-gate/1|bridge|" + bridge_id.encode() + b"|" + server_nonce + b"|" + bridge_nonce
    server_proof = p.server_proof(key, bridge_id, bridge_nonce, server_nonce)
    bridge_proof = p.bridge_proof(key, bridge_id, bridge_nonce, server_nonce)
    assert server_proof == hmac.new(key, server_input, hashlib.sha256).digest()
    assert bridge_proof == hmac.new(key, bridge_input, hashlib.sha256).digest()
    doc = re.sub(r"\s+", " ", DOC.read_text())
    for name, value in (("secret", secret), ("K", key.hex()), ("bridge_nonce", bridge_nonce.hex()),
                        ("server_nonce", server_nonce.hex()), ("server_input", server_input.hex()),
                        ("bridge_input", bridge_input.hex()), ("server_proof", server_proof.hex()),
                        ("bridge_proof", bridge_proof.hex())):
        assert f"{name} = {value}" in doc, name
    # The unpadded secret and its padded form are the same key.
    assert p.derive_key(secret + "=") == key


def test_the_bridge_imports_without_the_servers_packages():
    """What a bridge box installs (docs/bridge-install.md) is enough for gate_bridge/."""
    allowed = {"msgpack", "cryptography", "base45", "_cffi_backend", "cffi", "tzdata"}
    script = f"""
import importlib.abc, sys
ALLOWED = {allowed!r}
class OnlyTheBridgesPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        # _sysconfigdata_*: the interpreter's build settings, read by zoneinfo for its TZPATH
        stdlib = top in sys.stdlib_module_names or top.startswith("_sysconfigdata_")
        if stdlib or top in ALLOWED or top == "gate_bridge":
            return None
        raise ImportError(f"the bridge imported {{name}}")
sys.meta_path.insert(0, OnlyTheBridgesPackages())
import gate_bridge.bridge, gate_bridge.drivers, gate_bridge.session, gate_bridge.store
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr


def test_nothing_but_the_welcome_opens_the_session_for_heartbeats():
    clock = Clock()
    limits = Limits(heartbeat=1, handshake_timeout=5, clock=clock)
    key = p.derive_key(p.new_secret())
    server, bridge = ServerSession(limits), BridgeSession(limits, "br-1", key)
    bridge.hello()
    pump(bridge, server)
    server.challenge(key)
    pump(server, bridge)
    assert pump(bridge, server) == [Authenticated()]
    clock.now += 2  # the hub is still looking things up: no heartbeat may precede the welcome
    assert server.tick(clock.now) == [] and server.data_to_send() == b""
    server.welcome(clock.now, None)
    assert [type(e) for e in pump(server, bridge)] == [Welcomed]
    clock.now += 1
    assert server.tick(clock.now) == [HEARTBEAT_DUE]
