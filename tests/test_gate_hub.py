"""The gate hub over real sockets: handshake, hostile peers, heartbeats, events, commands, HTTP."""

import asyncio
import struct
from datetime import timedelta

import pytest

from gate_bridge import protocol as p
from models.gate_access import command_key
from tests.builders import make_community, make_resident
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import (HEARTBEAT, OPEN_WAIT, HubProcess, RawPeer,  # noqa: F401
                                 start_sim_bridge)

pytestmark = pytest.mark.asyncio


async def provisioned(app, code="g1", gate="main"):
    c = await make_community(app, code)
    creds = await app.bridges.provision(c.id, c.gates[gate], c.staff["admin"])
    return c, creds


async def connected_peer(peers, creds, codec="msgpack") -> RawPeer:
    peer = await peers(codec)
    _, welcome = await peer.handshake(creds["bridge_id"], creds["secret"])
    assert welcome["op"] == p.WELCOME, welcome
    return peer


# -- handshake ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["msgpack", "json"])
async def test_good_secret_gets_welcome_config_and_presence(peers, app, hub, codec):
    c, creds = await provisioned(app)
    peer = await peers(codec)
    challenge, welcome = await peer.handshake(creds["bridge_id"], creds["secret"])
    assert challenge["v"] == 1
    assert welcome["op"] == p.WELCOME and welcome["heartbeat"] == p.DEFAULT_HEARTBEAT
    assert abs(welcome["time"] - app.clock.time()) < 5
    config = await peer.expect(p.CONFIG)  # hello had no config version: full push
    assert config["version"] == welcome["config_version"]
    assert config["gate"]["gate_id"] == c.gates["main"] and config["rules"]["mode"] == "normal"
    presence = await app.gate_presence.presence([creds["bridge_id"]])
    assert presence[creds["bridge_id"]]["online"]
    peer.close()


async def test_wrong_secret_is_refused_and_stays_offline(peers, app, hub):
    _, creds = await provisioned(app)
    peer = await peers()
    _, reply = await peer.handshake(creds["bridge_id"], p.new_secret())
    assert reply["op"] == p.ERROR and reply["code"] == "auth_failed"
    await peer.closed()
    assert not (await app.gate_presence.presence([creds["bridge_id"]]))[creds["bridge_id"]]["online"]


async def test_unknown_bridge_is_challenged_like_any_other_then_refused(peers, app, hub):
    peer = await peers()
    challenge, reply = await peer.handshake("br-nobody", p.new_secret())
    assert challenge["op"] == p.CHALLENGE and reply["code"] == "auth_failed"


async def test_replayed_auth_proof_is_refused(peers, app, hub):
    _, creds = await provisioned(app)
    key = p.derive_key(creds["secret"])
    first = await peers()
    nonce = p.new_nonce()
    first.send(p.message(p.HELLO, v=[1], bridge=creds["bridge_id"], nonce=nonce))
    challenge = await first.expect(p.CHALLENGE)
    recorded = p.bridge_proof(key, creds["bridge_id"], nonce, p.as_bytes(challenge["nonce"], "n"))
    first.send(p.message(p.AUTH, proof=recorded))
    assert (await first.recv())["op"] == p.WELCOME
    first.close()
    # An eavesdropper replays the same hello and the recorded proof in a new session.
    second = await peers()
    second.send(p.message(p.HELLO, v=[1], bridge=creds["bridge_id"], nonce=nonce))
    await second.expect(p.CHALLENGE)
    second.send(p.message(p.AUTH, proof=recorded))
    assert (await second.recv())["code"] == "auth_failed"


async def test_reprovisioning_locks_out_the_old_secret(peers, app, hub):
    c, creds = await provisioned(app)
    again = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    assert again["bridge_id"] == creds["bridge_id"] and again["secret"] != creds["secret"]
    peer = await peers()
    assert (await peer.handshake(creds["bridge_id"], creds["secret"]))[1]["code"] == "auth_failed"


async def test_bridge_keys_are_stored_encrypted(peers, app, hub):
    _, creds = await provisioned(app)
    doc = await app.db.bridges.find_one({"_id": creds["bridge_id"]})
    key = p.derive_key(creds["secret"])
    assert key not in doc["key"] and creds["secret"].encode() not in doc["key"]


# -- hostile and broken peers -----------------------------------------------------------------------

async def test_unauthenticated_socket_is_closed_after_the_deadline(app, hub_with):
    _, peers = await hub_with(auth_timeout=0.5)
    peer = await peers()
    frames = await peer.closed()
    assert frames[-1]["code"] == "auth_timeout"


async def test_anything_but_hello_first_is_refused(peers, app, hub):
    peer = await peers()
    peer.send(p.message(p.SCAN, id="x", text="ok:1", direction="in"))
    assert (await peer.closed())[-1]["code"] == "not_authenticated"


async def test_garbage_unknown_and_oversized_frames_do_not_disturb_other_bridges(peers, app, hub):
    c, creds = await provisioned(app)
    other = await app.bridges.provision(c.id, c.gates["u1-1"], c.staff["admin"])
    bad = await connected_peer(peers, creds)
    good = await connected_peer(peers, other)
    bad.send_raw(struct.pack(">I", 3) + b"\xc1\xc1\xc1")  # framed, but not a payload
    assert (await bad.expect(p.ERROR))["code"] == "bad_frame"
    bad.send(p.message("teleport", to="mars"))
    reply = await bad.expect(p.ERROR)
    assert (reply["code"], reply["ref_op"]) == ("unknown_op", "teleport")
    bad.send(p.message(p.HEARTBEAT, t=1.0, extra_field_is_ignored=True))  # still served
    bad.send_raw(struct.pack(">I", 10 * 1024 * 1024) + b"x" * 100)
    frames = await bad.closed()
    assert frames[-1]["code"] == "frame_too_large"
    # The well-behaved bridge is still served: its events are stored and acknowledged.
    good.send(p.message(p.EVENTS, items=[{"seq": 1, "type": "door_opened", "at": 1.0}]))
    assert (await good.expect(p.EVENTS_ACK))["upto"] == 1


async def test_a_slow_partial_frame_is_timed_out(app, hub_with):
    _, creds = await provisioned(app)
    _, peers = await hub_with(read_timeout=0.5)
    peer = await connected_peer(peers, creds)
    peer.send_raw(struct.pack(">I", 100) + b"abc")  # never finished
    assert (await peer.closed())[-1]["code"] == "read_timeout"


async def test_a_flooding_bridge_is_rate_limited(app, hub_with):
    _, creds = await provisioned(app)
    # Refilled at 1 a second, a burst of 100 is not refilled by a loaded machine's pauses.
    _, peers = await hub_with(rate=1.0, burst=100)
    peer = await connected_peer(peers, creds)
    for _ in range(150):
        peer.send(p.message(p.HEARTBEAT, t=1.0))
    assert (await peer.expect(p.ERROR))["code"] == "rate_limited"


# -- heartbeats and presence ----------------------------------------------------------------------

async def test_silent_bridge_goes_offline_after_three_heartbeats(app, hub_with):
    c, creds = await provisioned(app)
    bridge_id = creds["bridge_id"]
    hub, peers = await hub_with(heartbeat=HEARTBEAT)
    peer = await connected_peer(peers, creds)
    # We stay silent. (Whether the hub beat before giving up is a matter of the machine's
    # pauses: test_gate_session checks its beats on a clock of its own.)
    frames = await peer.closed()
    assert frames[-1]["code"] == "heartbeat_lost"
    await hub.wait(lambda: bridge_id not in hub.connections and hub.idle)
    assert [a["kind"] for a in await app.gate_alarms.alarms(c.id, "open")] == ["bridge_offline"]
    assert not (await app.gate_presence.presence([bridge_id]))[bridge_id]["online"]
    kinds = [e["type"] for e in await app.db.gate_events.find({"bridge": bridge_id}).to_list(None)]
    assert kinds.count("online") == 1 and kinds.count("offline") == 1


async def test_clock_drift_reported_by_a_bridge_raises_an_alarm(peers, app, hub):
    c, creds = await provisioned(app)
    peer = await connected_peer(peers, creds)
    peer.send(p.message(p.HEARTBEAT, t=1.0, drift=3.5))
    conn = hub.connections[creds["bridge_id"]]
    await hub.wait(lambda: conn.drift_alarm and hub.idle)
    assert [a["kind"] for a in await app.gate_alarms.alarms(c.id)] == ["clock_drift"]


# -- events -------------------------------------------------------------------------------------------

async def test_events_are_stored_once_and_alarms_raised_once(peers, app, hub):
    c, creds = await provisioned(app)
    peer = await connected_peer(peers, creds)
    batch = [{"seq": 1, "type": "door_opened", "at": 10.0},
             {"seq": 2, "type": "door_forced", "at": 11.0},
             {"seq": 3, "type": "door_closed", "at": 12.0}]
    peer.send(p.message(p.EVENTS, items=batch[:2]))
    assert (await peer.expect(p.EVENTS_ACK))["upto"] == 2
    peer.send(p.message(p.EVENTS, items=batch))  # a replay overlapping the first batch
    assert (await peer.expect(p.EVENTS_ACK))["upto"] == 3
    stored = await app.db.gate_events.find({"bridge": creds["bridge_id"], "seq": {"$ne": None}}).to_list(None)
    assert sorted(e["seq"] for e in stored) == [1, 2, 3]
    alarms = await app.gate_alarms.alarms(c.id)
    assert [a["kind"] for a in alarms] == ["door_forced"]
    peer.send(p.message(p.EVENTS, items=[{"seq": 4, "type": "nonsense", "at": 1.0}]))
    assert (await peer.expect(p.ERROR))["code"] == "bad_field"


# -- remote open over HTTP --------------------------------------------------------------------------

async def test_staff_remote_open_reaches_all_three_levels(app, hub, api_client, tmp_path):
    c, creds = await provisioned(app)
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                      {"reason": "courier at the gate", "wait": OPEN_WAIT},
                                      token=c.tokens["security"])
        assert reply.status == 200, reply.body
        assert reply.body["levels"] == ["received", "actuated", "opened"]
        assert reply.body["level"] == "opened" and sim.relay.pulses == 1
        await app.outbox.settled()  # the audit record follows the answer
        audit = await app.db.gate_commands.find_one({"_id": reply.body["command_id"]})
        assert audit["reason"] == "courier at the gate"
        assert audit["by"] == f"staff:{c.staff['security']}"
        # The outcome is the command's access-log line.
        [line] = (await app.access_log.query(c.id, gate_id=c.gates["main"]))["items"]
        assert (line["command_id"], line["level"], line["result"], line["source"]) == (
            reply.body["command_id"], "opened", "allow", "remote")
    finally:
        await sim.stop()


async def test_remote_open_reports_not_opened_when_nobody_pushes_the_door(app, hub, api_client, tmp_path):
    c, creds = await provisioned(app)
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"],
                                 auto_door=False)
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                      {"reason": "test", "wait": OPEN_WAIT},
                                      token=c.tokens["manager"])
        assert reply.body["levels"] == ["received", "actuated", "not_opened"]
    finally:
        await sim.stop()


async def test_remote_open_of_an_offline_gate_is_504_gate_offline(app, hub, api_client):
    c, _ = await provisioned(app)
    reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                  {"reason": "test", "wait": 1}, token=c.tokens["admin"])
    assert (reply.status, reply.error["code"]) == (504, "gate_offline")


async def test_remote_open_without_any_ack_is_504_no_ack(peers, app, hub, api_client):
    c, creds = await provisioned(app)
    peer = await connected_peer(peers, creds)  # authenticates, then ignores commands
    reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                  {"reason": "test", "wait": 0.3}, token=c.tokens["admin"])
    assert (reply.status, reply.error["code"]) == (504, "no_ack")
    command = await peer.expect(p.OPEN)
    assert command["ttl"] == 5.0 and command["id"] == reply.error["command_id"]


async def test_remote_open_needs_a_reason_and_the_right_role(app, hub, api_client):
    c, _ = await provisioned(app)
    path = f"/api/communities/{c.id}/gates/{c.gates['main']}/open"
    reply = await api_client.post(path, {"reason": "  "}, token=c.tokens["security"])
    assert reply.status == 400 and "reason" in reply.error["fields"]
    reply = await api_client.post(path, {"reason": "x"}, token=c.tokens["maintenance"])
    assert reply.status == 403


async def test_queued_open_is_delivered_on_reconnect_but_never_after_its_ttl(peers, app, hub, api_client):
    c, creds = await provisioned(app)
    first = await connected_peer(peers, creds)
    opening = asyncio.create_task(api_client.post(
        f"/api/communities/{c.id}/gates/{c.gates['main']}/open", {"reason": "t", "wait": OPEN_WAIT},
        token=c.tokens["admin"]))
    command = await first.expect(p.OPEN)
    first.close()  # the link drops before the bridge acknowledged
    await hub.wait(lambda: creds["bridge_id"] not in hub.connections)
    second = await connected_peer(peers, creds)
    again = await second.expect(p.OPEN)  # still queued: delivered to the new session
    assert again["id"] == command["id"]
    second.send(p.message(p.ACK, id=command["id"], level=p.RECEIVED))
    second.send(p.message(p.ACK, id=command["id"], level=p.REFUSED, reason="expired"))
    reply = await opening
    assert reply.body["level"] == "refused" and reply.body["reason"] == "expired"
    second.close()
    # An unacknowledged command past its ttl is dropped from the queue, not delivered.
    await hub.wait(lambda: creds["bridge_id"] not in hub.connections)
    key = f"gate:pending:{creds['bridge_id']}"
    await app.redis.hset(key, "old", '{"cmd": {"op": "open", "id": "old", "issued_at": %f, "ttl": 5},'
                         ' "origin": "x"}' % (app.clock.time() - 6))
    await connected_peer(peers, creds)
    await hub.wait(lambda: hub.idle)  # the handshake, queue delivery included, is done
    assert not await app.redis.hexists(key, "old")


# -- resident remote open ---------------------------------------------------------------------------

async def test_resident_opens_gates_covering_their_room_a_few_times_a_minute(app, hub, api_client, tmp_path):
    c, creds = await provisioned(app, gate="u1-1")
    _, token = await make_resident(app, c, "li", room="1-2-101")  # not in unit 1-1
    path = f"/api/communities/{c.id}/gates/{c.gates['u1-1']}/open"
    assert (await api_client.post(path, {}, token=token)).status == 404
    _, token = await make_resident(app, c, "wang", room="1-1-101")
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        statuses = [(await api_client.post(path, {"wait": OPEN_WAIT}, token=token)).status
                    for _ in range(7)]
        assert statuses == [200] * 6 + [429]
    finally:
        await sim.stop()


# -- HTTP: gate list, rules push, alarms -----------------------------------------------------------------

async def test_gate_list_shows_live_status_and_rule_changes_reach_the_bridge(peers, app, hub, api_client):
    c, creds = await provisioned(app)
    peer = await connected_peer(peers, creds)
    first = await peer.expect(p.CONFIG)
    peer.send(p.message(p.CONFIG_ACK, version=first["version"]))
    gates = (await api_client.get(f"/api/communities/{c.id}/gates", token=c.tokens["security"])).body
    status = {g["code"]: g["online"] for g in gates}
    assert status == {"main": True, "u1-1": False}
    reply = await api_client.patch(f"/api/communities/{c.id}/gates/{c.gates['main']}",
                                   {"rules": {"pulse_ms": 2500}}, token=c.tokens["manager"])
    assert reply.status == 200 and reply.body["rules"]["pulse_ms"] == 2500
    pushed = await peer.expect(p.CONFIG)
    assert pushed["rules"]["pulse_ms"] == 2500 and pushed["version"] != first["version"]


async def test_alarms_are_acknowledged_then_closed_with_notes(peers, app, hub, api_client):
    c, creds = await provisioned(app)
    peer = await connected_peer(peers, creds)
    peer.send(p.message(p.EVENTS, items=[{"seq": 1, "type": "tamper", "at": 5.0}]))
    await peer.expect(p.EVENTS_ACK)
    base = f"/api/communities/{c.id}/alarms"
    [alarm] = (await api_client.get(base + "?state=open", token=c.tokens["security"])).body
    assert alarm["kind"] == "tamper"
    close_first = await api_client.post(f"{base}/{alarm['id']}/acknowledge", {"note": "on my way"},
                                        token=c.tokens["security"])
    assert close_first.body["state"] == "acknowledged"
    closed = await api_client.post(f"{base}/{alarm['id']}/close", {"note": "cover refitted"},
                                   token=c.tokens["manager"])
    assert closed.body["state"] == "closed"
    assert [h["note"] for h in closed.body["history"]] == ["on my way", "cover refitted"]
    again = await api_client.post(f"{base}/{alarm['id']}/acknowledge", {"note": "x"},
                                  token=c.tokens["security"])
    assert (again.status, again.error["code"]) == (409, "bad_transition")
    assert (await api_client.post(f"{base}/{alarm['id']}/close", {"note": ""},
                                  token=c.tokens["security"])).status == 400
    assert (await api_client.get(base, token=c.tokens["maintenance"])).status == 403


async def test_provisioning_shows_the_secret_once_to_office_staff(app, hub, api_client):
    c = await make_community(app, "g2")
    path = f"/api/communities/{c.id}/gates/{c.gates['main']}/bridge"
    assert (await api_client.post(path, token=c.tokens["security"])).status == 403
    reply = await api_client.post(path, token=c.tokens["admin"])
    assert reply.status == 201 and len(reply.body["secret"]) >= 40
    # What the bridge's config needs besides: where the hub listens, and how.
    assert (reply.body["hub_port"], reply.body["hub_tls"]) == (app.config.gate_port, False)
    gate = (await api_client.get(f"/api/communities/{c.id}/gates/{c.gates['main']}",
                                 token=c.tokens["admin"])).body
    assert gate["bridge_id"] == reply.body["bridge_id"] and "secret" not in gate


# -- scans through the real verifier -------------------------------------------------------------------

async def test_scan_allow_opens_the_door_and_deny_does_not(app, hub, tmp_path):
    c, creds = await provisioned(app)
    _, token = await make_resident(app, c, "zhao", room="1-1-101")
    principal = await app.auth.principal(token)
    code = (await app.passes.resident_code(principal, c.id))["token"]
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"],
                                 decision_budget=3.0)
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        first = await sim.bridge.handle_scan(code)
        assert (first["source"], first["allow"], first["reason"]) == ("server", True, "ok")
        await sim.bridge.wait(lambda: sim.relay.pulses == 1)
        again = await sim.bridge.handle_scan(code)
        assert (again["source"], again["allow"], again["reason"]) == ("server", False, "replayed")
        garbage = await sim.bridge.handle_scan("HELLO-NOT-A-CODE")
        assert (garbage["allow"], garbage["reason"]) == (False, "malformed")
        assert sim.relay.pulses == 1
    finally:
        await sim.stop()
    page = await app.access_log.query(c.id, gate_id=c.gates["main"])
    # Each line names the scan it answers (written before the answer went out).
    assert [(e["result"], e["reason"], e["scan"]) for e in page["items"]] == [
        ("deny", "malformed", garbage["scan"]), ("deny", "replayed", again["scan"]),
        ("allow", "ok", first["scan"])]


# -- sessions bound to their bridge -----------------------------------------------------------------

async def test_an_ack_counts_only_from_the_session_the_command_went_to(peers, app, hub, api_client):
    c, creds = await provisioned(app)
    other = await app.bridges.provision(c.id, c.gates["u1-1"], c.staff["admin"])
    target = await connected_peer(peers, creds)
    intruder = await connected_peer(peers, other)
    opening = asyncio.create_task(api_client.post(
        f"/api/communities/{c.id}/gates/{c.gates['main']}/open", {"reason": "t", "wait": OPEN_WAIT},
        token=c.tokens["admin"]))
    command = await target.expect(p.OPEN)
    intruder.send(p.message(p.ACK, id=command["id"], level=p.RECEIVED))
    intruder.send(p.message(p.ACK, id=command["id"], level=p.OPENED))
    intruder.send(p.message(p.HEARTBEAT, t=1.0))
    await hub.wait(lambda: hub.idle)
    assert not opening.done()  # the door that was asked has not answered yet
    target.send(p.message(p.ACK, id=command["id"], level=p.RECEIVED))
    target.send(p.message(p.ACK, id=command["id"], level=p.NOT_OPENED))
    reply = await opening
    assert reply.body["levels"] == ["received", "not_opened"]


async def test_a_second_session_for_a_bridge_replaces_the_first_with_a_bye(peers, app, hub):
    _, creds = await provisioned(app)
    first = await connected_peer(peers, creds)
    await connected_peer(peers, creds)
    frames = await first.closed()
    assert frames[-1] == {"op": p.BYE, "reason": "replaced"}
    assert hub.connections[creds["bridge_id"]].session.ready


async def test_reprovisioning_closes_the_live_session_on_the_process_holding_it(peers, app, settings):
    c, creds = await provisioned(app)
    other_process = HubProcess(settings)
    opened = []
    try:
        port = await other_process.ready()
        opened.append(peer := await RawPeer.connect(port))
        _, welcome = await peer.handshake(creds["bridge_id"], creds["secret"])
        assert welcome["op"] == p.WELCOME
        await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
        frames = await peer.closed()
        assert frames[-1] == {"op": p.BYE, "reason": "reprovisioned"}
        opened.append(again := await RawPeer.connect(port))
        assert (await again.handshake(creds["bridge_id"], creds["secret"]))[1]["code"] == "auth_failed"
    finally:
        for raw in opened:
            raw.close()
            await raw.writer.wait_closed()
        other_process.kill()


async def test_disabling_a_bridge_closes_its_session_and_refuses_it(peers, app, hub, api_client):
    c, creds = await provisioned(app)
    peer = await connected_peer(peers, creds)
    path = f"/api/communities/{c.id}/gates/{c.gates['main']}/bridge"
    assert (await api_client.delete(path, token=c.tokens["security"])).status == 403
    reply = await api_client.delete(path, token=c.tokens["manager"])
    assert reply.status == 200 and reply.body["disabled_at"]
    frames = await peer.closed()
    assert frames[-1] == {"op": p.BYE, "reason": "disabled"}
    again = await peers()
    assert (await again.handshake(creds["bridge_id"], creds["secret"]))[1]["code"] == "auth_failed"
    opened = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                   {"reason": "t", "wait": 1}, token=c.tokens["admin"])
    assert (opened.status, opened.error["code"]) == (504, "gate_offline")


async def test_a_newer_firmware_sending_an_unknown_op_per_event_is_not_cut_off(peers, app, hub):
    _, creds = await provisioned(app)
    peer = await connected_peer(peers, creds)
    for seq in range(1, 13):
        peer.send(p.message("door_telemetry", volts=12.0))  # an optional op this hub lacks
        peer.send(p.message(p.EVENTS, items=[{"seq": seq, "type": "door_opened", "at": 1.0}]))
        assert (await peer.expect(p.EVENTS_ACK))["upto"] == seq
    assert hub.connections[creds["bridge_id"]].session.ready


# -- used codes reach the bridges -----------------------------------------------------------------------

async def resident_code(app, c, name="zhao", room="1-1-101") -> str:
    _, token = await make_resident(app, c, name, room=room)
    return (await app.passes.resident_code(await app.auth.principal(token), c.id))["token"]


async def test_a_code_used_online_reaches_connected_bridges_and_is_refused_offline(app, hub, tmp_path):
    c, creds = await provisioned(app)
    code = await resident_code(app, c)
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.store.config() is not None)
        unit_door = await app.places.gate(c.id, c.gates["u1-1"])  # another gate, online
        assert (await app.gate_access.check(code, unit_door, "in", "gate")).allow
        used = sim.bridge.store.db.execute("SELECT count(*) FROM nonces")
        await sim.bridge.wait(lambda: used.execute("SELECT count(*) FROM nonces").fetchone()[0] == 1)
        await hub.stop()  # the link drops: the bridge decides alone now
        await sim.bridge.wait(lambda: sim.bridge.writer is None)
        outcome = await sim.bridge.handle_scan(code)
        assert (outcome["source"], outcome["allow"], outcome["reason"]) == ("bridge", False, "replayed")
        assert sim.relay.pulses == 0
    finally:
        await sim.stop()


async def test_a_bridge_connecting_after_a_use_gets_it_in_its_config(peers, app, hub):
    c, creds = await provisioned(app)
    other = await app.bridges.provision(c.id, c.gates["u1-1"], c.staff["admin"])
    code = await resident_code(app, c)
    first = await connected_peer(peers, creds)
    assert (await first.expect(p.CONFIG))["nonces"] == []  # the community's config is cached now
    unit_door = await app.places.gate(c.id, c.gates["u1-1"])
    assert (await app.gate_access.check(code, unit_door, "in", "gate")).allow
    delta = await first.expect(p.USED)
    [[nonce, expires]] = delta["nonces"]
    assert expires > app.clock.time()
    second = await connected_peer(peers, other)
    assert (await second.expect(p.CONFIG))["nonces"] == [[nonce, expires]]


async def test_a_long_list_of_used_codes_is_split_across_frames(peers, app, hub):
    c, creds = await provisioned(app)
    hub.options.used_per_frame = 3
    principal = await app.auth.principal(c.tokens["security"])
    for _ in range(3 + 2):  # more uses than one frame carries
        code = (await app.passes.resident_code(principal, c.id))["token"]
        assert (await app.gate_access.check(code, await app.places.gate(c.id, c.gates["u1-1"]),
                                            "in", "gate")).allow
    peer = await connected_peer(peers, creds)
    config = await peer.expect(p.CONFIG)
    rest = await peer.expect(p.USED)
    assert len(config["nonces"]) == 3 and len(rest["nonces"]) == 2
    assert len({n for n, _ in config["nonces"] + rest["nonces"]}) == 5


async def test_a_redelivered_open_answered_as_a_repeat_is_logged_as_the_opening_it_was(
        peers, app, hub, api_client):
    c, creds = await provisioned(app)
    first = await connected_peer(peers, creds)
    opening = asyncio.create_task(api_client.post(
        f"/api/communities/{c.id}/gates/{c.gates['main']}/open", {"reason": "t", "wait": OPEN_WAIT},
        token=c.tokens["admin"]))
    command = await first.expect(p.OPEN)
    first.close()  # the bridge opened the door, but its acks were lost with the link
    await hub.wait(lambda: creds["bridge_id"] not in hub.connections)
    second = await connected_peer(peers, creds)
    again = await second.expect(p.OPEN)
    # Seen before: the bridge does not act again and names the last level it reached.
    second.send(p.message(p.ACK, id=again["id"], level=p.OPENED, duplicate=True))
    reply = await opening
    assert (reply.status, reply.body["level"]) == (200, "opened"), reply.body
    [line] = (await app.access_log.query(c.id, gate_id=c.gates["main"]))["items"]
    assert (line["command_id"], line["result"], line["reason"], line["level"]) == (
        command["id"], "allow", "ok", "opened")
    # The outcome told again (a second answer, a retried audit) is still one line.
    await app.outbox.settled()
    record = await app.db.gate_commands.find_one({"_id": command["id"]})
    await app.gate_access.record_outcome(command_key(command["id"]), record,
                                         [{"level": p.OPENED, "duplicate": True}])
    assert len((await app.access_log.query(c.id, gate_id=c.gates["main"]))["items"]) == 1
