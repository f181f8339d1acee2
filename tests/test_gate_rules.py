"""The gate's own rules on every path (staff scanner, hub scan, remote open, bridge offline, the
server's re-check of offline decisions), emergency modes, and codes that must stay refused."""

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate_bridge import protocol as p
from gate_bridge.decision import effective_mode
from gate_bridge.passes import NONCE_BYTES, Payload, community_tag, sign, split
from models.common import ManualClock
from tests.builders import make_community, make_resident
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import OPEN_WAIT, start_sim_bridge

pytestmark = pytest.mark.asyncio
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in China


@pytest.fixture
def clock():
    return ManualClock(START)


async def code_for(api, c, token, short=False) -> dict:
    reply = await api.get(f"/api/communities/{c.id}/code" + ("?profile=short" if short else ""),
                          token=token)
    assert reply.status == 200, reply.body
    return reply.body


async def check(api, c, text, gate="main", role="security", status=200) -> dict:
    reply = await api.post(f"/api/communities/{c.id}/gates/{c.gates[gate]}/check",
                           {"token": text, "direction": "in"}, token=c.tokens[role])
    assert reply.status == status, reply.body
    return reply.body


def outcome(scan: dict) -> dict:
    """A bridge's scan outcome without its scan id (random)."""
    return {k: v for k, v in scan.items() if k != "scan"}


async def set_mode(api, c, mode, gate=None, role="manager", status=200):
    path = (f"/api/communities/{c.id}/gates/{c.gates[gate]}/mode" if gate
            else f"/api/communities/{c.id}/mode")
    reply = await api.post(path, {"mode": mode, "reason": f"drill: {mode}"}, token=c.tokens[role])
    assert reply.status == status, reply.body
    return reply


async def log_lines(app, c, gate="main") -> list[dict]:
    return (await app.access_log.query(c.id, gate_id=c.gates[gate]))["items"]


async def connected(peers, app, c, gate="main"):
    """A raw peer, handshaken and configured as the bridge of `gate` (it sends no heartbeats:
    the `hub` fixture's default timings keep its session through a loaded machine's pauses)."""
    creds = await app.bridges.provision(c.id, c.gates[gate], c.staff["admin"])
    peer = await peers()
    _, welcome = await peer.handshake(creds["bridge_id"], creds["secret"])
    assert welcome["op"] == p.WELCOME, welcome
    config = await peer.expect(p.CONFIG)
    peer.send(p.message(p.CONFIG_ACK, version=config["version"]))
    return peer, creds, config


# -- hole 1: mode and hours on every path ---------------------------------------------------------

async def test_lockdown_refuses_scanner_and_hub_scans_without_using_the_code(app, peers,
                                                                            api_client):
    c = await make_community(app, "lock")
    _, token = await make_resident(app, c, "lock-a")
    peer, _, _ = await connected(peers, app, c)
    await set_mode(api_client, c, "locked", gate="main")
    pushed = await peer.expect(p.CONFIG)  # the change reaches the bridge at once
    assert pushed["rules"]["mode"] == "locked" and pushed["modes"]["gate"] == "locked"
    code = (await code_for(api_client, c, token))["token"]
    assert (await check(api_client, c, code))["reason"] == "locked"
    peer.send(p.message(p.SCAN, id="s1", text=code, direction="in"))
    result = await peer.expect(p.SCAN_RESULT, id="s1")
    assert (result["allow"], result["reason"]) == (False, "locked")
    # Staff codes still open in lockdown (the gate's rules allow it by default).
    staff_code = (await code_for(api_client, c, c.tokens["security"]))["token"]
    assert (await check(api_client, c, staff_code))["reason"] == "ok"
    await set_mode(api_client, c, "normal", gate="main")
    # Refused twice, used never: the same code opens once lockdown ends.
    assert (await check(api_client, c, code))["reason"] == "ok"
    reasons = sorted(line["reason"] for line in await log_lines(app, c))
    assert reasons == ["locked", "locked", "ok", "ok"]


async def test_gate_hours_refuse_residents_outside_them_but_not_staff(app, hub, api_client):
    c = await make_community(app, "hrs")
    rid, token = await make_resident(app, c, "hrs-a")
    reply = await api_client.patch(f"/api/communities/{c.id}/gates/{c.gates['main']}",
                                   {"rules": {"hours": [["06:00", "09:00"], ["22:00", "01:00"]]}},
                                   token=c.tokens["manager"])
    assert reply.status == 200, reply.body
    code = (await code_for(api_client, c, token))["token"]
    assert (await check(api_client, c, code))["reason"] == "gate_closed"  # 10:00 local
    staff_code = (await code_for(api_client, c, c.tokens["security"]))["token"]
    assert (await check(api_client, c, staff_code))["reason"] == "ok"
    app.clock.advance(13 * 3600)  # 23:00 local: inside the window across midnight
    token = (await app.auth.start_session(rid, "resident"))["access_token"]
    c.tokens["security"] = (await app.auth.start_session(c.staff["security"], "staff"))["access_token"]
    c.tokens["manager"] = (await app.auth.start_session(c.staff["manager"], "staff"))["access_token"]
    fresh = (await code_for(api_client, c, token))["token"]
    assert (await check(api_client, c, fresh))["reason"] == "ok"
    bad = await api_client.patch(f"/api/communities/{c.id}/gates/{c.gates['main']}",
                                 {"rules": {"hours": [["6:00", "25:00"]]}}, token=c.tokens["manager"])
    assert bad.status == 400


async def test_remote_opens_follow_the_gate_rules(app, hub, api_client, tmp_path):
    c = await make_community(app, "rmt")
    _, token = await make_resident(app, c, "rmt-a")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    path = f"/api/communities/{c.id}/gates/{c.gates['main']}/open"
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        await set_mode(api_client, c, "locked")
        refused = await api_client.post(path, {"wait": OPEN_WAIT}, token=token)
        assert (refused.status, refused.error["code"]) == (409, "locked")
        staff = await api_client.post(path, {"reason": "guard lets the medic in",
                                             "wait": OPEN_WAIT},
                                      token=c.tokens["security"])
        assert staff.status == 200 and staff.body["level"] == "opened"
        assert sim.relay.pulses == 1
    finally:
        await sim.stop()
    lines = await log_lines(app, c)
    assert sorted((line["kind"], line["result"], line["reason"]) for line in lines) == [
        ("resident", "deny", "locked"), ("staff", "allow", "ok")]


async def test_a_bridge_keeps_the_last_mode_offline_and_decides_with_it(app, hub,
                                                                       api_client, tmp_path):
    c = await make_community(app, "offl")
    _, token = await make_resident(app, c, "offl-a")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    code = (await code_for(api_client, c, token))["token"]
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        await set_mode(api_client, c, "locked")
        await sim.bridge.wait(lambda: sim.bridge.mode == "locked")
        await hub.stop()  # the link goes down
        await sim.bridge.wait(lambda: sim.bridge.writer is None)
        outcome = await sim.bridge.handle_scan(code)
        assert (outcome["source"], outcome["allow"], outcome["reason"]) == ("bridge", False, "locked")
        assert sim.relay.pulses == 0
    finally:
        await sim.stop()


async def test_gate_hours_across_a_daylight_saving_change_online_and_offline(
        app, hub, api_client, tmp_path):
    # Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on 2026-03-29. The bridge gets its config
    # the day before and decides on after the change without a new one.
    app.clock.current = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    c = await make_community(app, "dst")
    await app.places.update_community(c.id, {"time_zone": "Europe/Berlin"})
    rid, _ = await make_resident(app, c, "dst-a")
    reply = await api_client.patch(f"/api/communities/{c.id}/gates/{c.gates['main']}",
                                   {"rules": {"hours": [["07:00", "20:00"]]}}, token=c.tokens["manager"])
    assert reply.status == 200, reply.body
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"],
                                 clock=app.clock.time, auto_door=False)

    async def fresh_code() -> str:
        token = (await app.auth.start_session(rid, "resident"))["access_token"]
        return (await code_for(api_client, c, token))["token"]

    async def at(hour: int, minute: int) -> None:
        app.clock.current = datetime(2026, 3, 29, hour, minute, tzinfo=UTC)
        c.tokens["security"] = (await app.auth.start_session(c.staff["security"], "staff"))[
            "access_token"]

    try:
        await sim.bridge.wait(lambda: (sim.bridge.store.config() or {}).get("gate", {}).get(
            "time_zone") == "Europe/Berlin")
        # Online: the staff scanner and the hub's scan of the bridge's reader.
        await at(5, 30)  # 07:30 summer time (06:30 by the winter offset: closed)
        assert (await check(api_client, c, await fresh_code()))["reason"] == "ok"
        assert outcome(await sim.bridge.handle_scan(await fresh_code())) == {
            "source": "server", "allow": True, "reason": "ok"}
        await at(18, 30)  # 20:30 summer time (19:30 by the winter offset: open)
        assert (await check(api_client, c, await fresh_code()))["reason"] == "gate_closed"
        assert (await sim.bridge.handle_scan(await fresh_code()))["reason"] == "gate_closed"
        # Offline, with the config pushed before the change.
        await hub.stop()
        await sim.bridge.wait(lambda: sim.bridge.writer is None)
        assert outcome(await sim.bridge.handle_scan(await fresh_code())) == {
            "source": "bridge", "allow": False, "reason": "gate_closed"}
        await at(5, 30)
        assert outcome(await sim.bridge.handle_scan(await fresh_code())) == {
            "source": "bridge", "allow": True, "reason": "ok"}
    finally:
        await sim.stop()


# -- emergency modes ----------------------------------------------------------------------------------

async def test_mode_ranking():
    assert effective_mode("locked", "open") == effective_mode("open", "locked") == "open"
    assert effective_mode("normal", "locked") == "locked"
    assert effective_mode(None, "normal") == effective_mode() == "normal"


async def test_fire_release_outranks_lockdown_and_is_audited_alarmed_and_permissioned(
        app, hub, api_client, tmp_path):
    c = await make_community(app, "fire")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        await set_mode(api_client, c, "open", role="security", status=403)  # a guard: no
        await set_mode(api_client, c, "locked", gate="main", role="security_lead")
        await sim.bridge.wait(lambda: sim.bridge.mode == "locked")
        await set_mode(api_client, c, "open")  # community-wide fire release
        await sim.bridge.wait(lambda: sim.bridge.mode == "open")
        assert sim.relay.active
        gates = (await api_client.get(f"/api/communities/{c.id}/gates",
                                      token=c.tokens["security"])).body
        assert {g["code"]: g["mode"] for g in gates} == {"main": "open", "u1-1": "open"}
        await set_mode(api_client, c, "normal")  # the fire release ends: the lockdown is back
        await sim.bridge.wait(lambda: sim.bridge.mode == "locked")
        assert not sim.relay.active
    finally:
        await sim.stop()
    state = (await api_client.get(f"/api/communities/{c.id}/mode", token=c.tokens["security"])).body
    assert state["community"] == "normal" and state["gates"] == {c.gates["main"]: "locked"}
    assert [(ch["mode"], ch["previous"]) for ch in state["changes"]] == [
        ("normal", "open"), ("open", "normal"), ("locked", "normal")]
    alarms = await app.gate_alarms.alarms(c.id)
    assert sorted(a["data"]["mode"] for a in alarms if a["kind"] == "mode_changed") == [
        "locked", "normal", "open"]


async def test_a_fire_panel_input_releases_the_gate_locally_and_is_reported(
        app, hub, api_client, tmp_path):
    c = await make_community(app, "panel")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        await set_mode(api_client, c, "locked")
        await sim.bridge.wait(lambda: sim.bridge.mode == "locked")
        await sim.bridge.fire_panel(True)
        assert sim.bridge.mode == "open" and sim.relay.active
        await sim.bridge.wait(lambda: sim.bridge.store.count == 0)  # reported and acknowledged
        await hub.wait(lambda: hub.idle)
    finally:
        await sim.stop()
    [alarm] = [a for a in await app.gate_alarms.alarms(c.id) if a["kind"] == "fire_release"]
    assert alarm["data"] == {"active": True}
    changes = (await api_client.get(f"/api/communities/{c.id}/mode",
                                    token=c.tokens["security"])).body["changes"]
    assert changes[0]["mode"] == "open" and changes[0]["by"] == f"bridge:{creds['bridge_id']}"


# -- hole 3: offline decisions are re-checked on the server --------------------------------------------

def forged(c, kind_subject: str, key_id: int) -> str:
    now = int(START.timestamp())
    payload = Payload("resident", key_id, now, now + 60, secrets.token_bytes(NONCE_BYTES),
                      community_tag(c.id), bytes.fromhex(kind_subject), 0, (0, 96), ())
    return sign(payload, c.id, Ed25519PrivateKey.generate())


async def test_offline_claims_are_rechecked_flagged_and_alarmed(app, hub, peers,
                                                                api_client):
    c = await make_community(app, "claim")
    rid, token = await make_resident(app, c, "claim-a")
    peer, _, _ = await connected(peers, app, c)
    used_online = (await code_for(api_client, c, token))["token"]
    assert (await check(api_client, c, used_online, gate="u1-1"))["reason"] == "ok"
    good = (await code_for(api_client, c, token))["token"]
    key_id = split(good)[0].key_id
    at = app.clock.time()
    claims = [("NOT-A-CODE", True), (forged(c, rid, 200), True), (forged(c, rid, key_id), True),
              (used_online, True), (good, True), ("123456789012", False)]
    peer.send(p.message(p.EVENTS, items=[
        {"seq": i + 1, "type": "offline_decision", "at": at, "scan": f"s{i}", "text": text,
         "direction": "in", "allow": allow, "reason": "ok" if allow else "unknown_code"}
        for i, (text, allow) in enumerate(claims)]))
    await peer.expect(p.EVENTS_ACK)
    await hub.wait(lambda: hub.idle)
    lines = sorted(await log_lines(app, c), key=lambda line: line["at"])
    got = sorted((line["bridge"]["allow"], line["result"], line["reason"], line.get("flag"),
                  line["subject"]) for line in lines if line["source"] == "offline")
    assert got == sorted([
        (True, "deny", "malformed", "invalid_claim", None),
        (True, "deny", "unknown_key", "invalid_claim", rid),
        (True, "deny", "bad_signature", "invalid_claim", rid),
        (True, "deny", "replayed", "double_use", rid),
        (True, "allow", "ok", None, rid),
        (False, "deny", "unknown_code", None, None)])
    flagged = await api_client.get(f"/api/communities/{c.id}/access-log?flag=double_use",
                                   token=c.tokens["security"])
    assert [line["reason"] for line in flagged.body["items"]] == ["replayed"]
    kinds = sorted(a["kind"] for a in await app.gate_alarms.alarms(c.id))
    assert kinds == ["double_use", "invalid_offline_claim", "invalid_offline_claim",
                     "invalid_offline_claim"]
    # The good code's use was taken by the replay: online it is now refused.
    assert (await check(api_client, c, good, gate="u1-1"))["reason"] == "replayed"


async def test_an_offline_allow_during_a_lockdown_is_flagged(app, hub, peers,
                                                             api_client):
    c = await make_community(app, "clk")
    _, token = await make_resident(app, c, "clk-a")
    peer, _, _ = await connected(peers, app, c)
    await set_mode(api_client, c, "locked")
    code = (await code_for(api_client, c, token))["token"]
    peer.send(p.message(p.EVENTS, items=[
        {"seq": 1, "type": "offline_decision", "at": app.clock.time(), "scan": "s", "text": code,
         "direction": "in", "allow": True, "reason": "ok"}]))
    await peer.expect(p.EVENTS_ACK)
    await hub.wait(lambda: hub.idle)
    [line] = [line for line in await log_lines(app, c) if line["source"] == "offline"]
    assert (line["result"], line["reason"], line["flag"]) == ("deny", "locked", "invalid_claim")


# -- hole 6: a cancelled pass stays cancelled --------------------------------------------------------

async def test_lifting_a_suspension_does_not_resurrect_a_cancelled_pass(app, api_client):
    c = await make_community(app, "resur")
    worker = (await api_client.post(f"/api/communities/{c.id}/passes/workers", {
        "name": "Wu", "purpose": "pipes", "approval_ref": "A-1", "room_path": "1-1-101",
        "gates": ["main"], "valid_from": START.isoformat(),
        "valid_to": (START + timedelta(days=3)).isoformat(),
        "hours": {"start": "00:00", "end": "24:00"}}, token=c.tokens["manager"])).body
    assert (await check(api_client, c, worker["token"]))["reason"] == "ok"
    cancelled = await api_client.delete(f"/api/communities/{c.id}/passes/{worker['id']}",
                                        token=c.tokens["manager"])
    assert cancelled.status == 200, cancelled.body
    lifted = await api_client.delete(f"/api/communities/{c.id}/suspensions/{worker['id']}",
                                     token=c.tokens["security"])
    assert lifted.status == 204
    assert (await check(api_client, c, worker["token"]))["reason"] == "revoked"
    config = (await api_client.get(f"/api/communities/{c.id}/pass-config",
                                   token=c.tokens["security"])).body
    assert worker["id"] in config["revoked"]


# -- hole 7: short codes ---------------------------------------------------------------------------

async def test_a_short_code_with_the_readers_line_ending_is_accepted(app, api_client):
    c = await make_community(app, "crlf")
    _, token = await make_resident(app, c, "crlf-a")
    digits = (await code_for(api_client, c, token, short=True))["short_code"]
    assert (await check(api_client, c, digits + "\r\n"))["reason"] == "ok"
    token_text = (await code_for(api_client, c, token))["token"]
    assert (await check(api_client, c, token_text + "\r\n"))["reason"] == "ok"


async def test_guessing_short_codes_is_limited_per_token_and_bridge_and_alarmed(
        app, hub, peers, api_client):
    c = await make_community(app, "guess")
    _, token = await make_resident(app, c, "guess-a")
    from models.gate_access import SHORT_CODE_FAILURES
    for i in range(SHORT_CODE_FAILURES):
        assert (await check(api_client, c, f"{i:012d}"))["reason"] == "unknown_code"
    limited = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/check",
                                    {"token": "999999999999", "direction": "in"},
                                    token=c.tokens["security"])
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    # Even a real short code is not looked up for this scanner now; another scanner is not held up.
    digits = (await code_for(api_client, c, token, short=True))["short_code"]
    assert (await check(api_client, c, digits, role="manager"))["reason"] == "ok"
    peer, _, _ = await connected(peers, app, c, gate="u1-1")
    for i in range(SHORT_CODE_FAILURES + 1):
        peer.send(p.message(p.SCAN, id=f"g{i}", text=f"{i:012d}", direction="in"))
        result = await peer.expect(p.SCAN_RESULT, id=f"g{i}")
    assert (result["allow"], result["reason"]) == (False, "rate_limited")
    await hub.wait(lambda: hub.idle)
    guessing = [a for a in await app.gate_alarms.alarms(c.id) if a["kind"] == "code_guessing"]
    assert len(guessing) == 2


async def test_an_offline_decision_stored_before_a_crash_is_reconciled_once_when_resent(
        app, hub, peers, api_client):
    c = await make_community(app, "crash")
    rid, token = await make_resident(app, c, "crash-a")
    peer, creds, _ = await connected(peers, app, c)
    code = (await code_for(api_client, c, token))["token"]
    item = {"seq": 1, "type": "offline_decision", "at": app.clock.time(), "scan": "s1",
            "text": code, "direction": "in", "allow": True, "reason": "ok"}
    # A hub stored the event, then died before acting on it or acknowledging it.
    bridge = await app.db.bridges.find_one({"_id": creds["bridge_id"]})
    assert await app.gate_events.store_events(bridge, [item])
    for _ in range(2):  # the bridge resends it (twice: a second crash before the ack)
        peer.send(p.message(p.EVENTS, items=[item]))
        assert (await peer.expect(p.EVENTS_ACK))["upto"] == 1
        await hub.wait(lambda: hub.idle)
        peer.close()
        peer = await peers()
        _, welcome = await peer.handshake(creds["bridge_id"], creds["secret"])
        assert welcome["op"] == p.WELCOME
    [line] = [line for line in await log_lines(app, c) if line["source"] == "offline"]
    assert (line["result"], line["reason"], line["subject"], line.get("flag")) == (
        "allow", "ok", rid, None)
    assert not [a for a in await app.gate_alarms.alarms(c.id) if a["kind"] == "double_use"]
    assert (await check(api_client, c, code, gate="u1-1"))["reason"] == "replayed"  # use taken


# -- staff codes are scoped by role (issue 11.8) ---------------------------------------------------

async def patch_gate(api, c, gate, rules):
    reply = await api.patch(f"/api/communities/{c.id}/gates/{c.gates[gate]}", {"rules": rules},
                            token=c.tokens["manager"])
    assert reply.status == 200, reply.body


async def test_staff_codes_open_only_gates_their_roles_may_use_online_and_offline(
        app, hub, api_client, tmp_path):
    c = await make_community(app, "roles")
    denied = await api_client.get(f"/api/communities/{c.id}/code", token=c.tokens["maintenance"])
    assert denied.status == 403 and denied.error["code"] == "no_gate_role"  # not by default
    await patch_gate(api_client, c, "u1-1", {"staff_roles": ["maintenance"]})
    fixer = await code_for(api_client, c, c.tokens["maintenance"])
    assert fixer["kind"] == "staff" and fixer["scope"] == ["maintenance"]
    assert (await check(api_client, c, fixer["token"]))["reason"] == "gate_not_allowed"
    guard = (await code_for(api_client, c, c.tokens["security"]))["token"]
    assert (await check(api_client, c, guard, gate="u1-1"))["reason"] == "gate_not_allowed"
    assert (await check(api_client, c, fixer["token"], gate="u1-1"))["reason"] == "ok"
    # The community names maintenance for its gates; a gate's own list still wins.
    reply = await api_client.patch(f"/api/communities/{c.id}",
                                   {"settings": {"staff_gate_roles": ["maintenance", "security"]}},
                                   token=c.tokens["admin"])
    assert reply.status == 200 and reply.body["settings"]["staff_gate_roles"] == [
        "maintenance", "security"]
    fixer = (await code_for(api_client, c, c.tokens["maintenance"]))["token"]
    assert (await check(api_client, c, fixer))["reason"] == "ok"
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        # The first config push carries the community's list.
        await sim.bridge.wait(lambda: sim.bridge._rules().get("staff_roles") == [
            "maintenance", "security"])
        reply = await api_client.patch(f"/api/communities/{c.id}", {"settings": {
            "staff_gate_roles": ["maintenance", "manager", "security"]}}, token=c.tokens["admin"])
        assert reply.status == 200
        await sim.bridge.wait(lambda: sim.bridge._rules()["staff_roles"] == [  # pushed at once
            "maintenance", "manager", "security"])
        await patch_gate(api_client, c, "main", {"staff_roles": ["security"]})
        await sim.bridge.wait(lambda: sim.bridge._rules()["staff_roles"] == ["security"])
        fixer = (await code_for(api_client, c, c.tokens["maintenance"]))["token"]
        guard = (await code_for(api_client, c, c.tokens["security"]))["token"]
        await hub.stop()  # the bridge decides alone, from what it was pushed
        await sim.bridge.wait(lambda: sim.bridge.writer is None)
        outcome = await sim.bridge.handle_scan(fixer)
        assert (outcome["source"], outcome["allow"], outcome["reason"]) == (
            "bridge", False, "gate_not_allowed")
        assert sim.relay.pulses == 0
        outcome = await sim.bridge.handle_scan(guard)
        assert (outcome["source"], outcome["allow"]) == ("bridge", True)
    finally:
        await sim.stop()


async def test_a_resident_opens_remotely_only_a_few_times_a_minute_even_all_at_once(
        app, hub, api_client):
    c = await make_community(app, "often")
    _, token = await make_resident(app, c, "often-a")
    _, other = await make_resident(app, c, "often-b", room="1-1-102")
    await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])  # never connected
    path = f"/api/communities/{c.id}/gates/{c.gates['main']}/open"
    replies = await asyncio.gather(*(api_client.post(path, {"wait": 0.1}, token=token)
                                     for _ in range(20)))
    # Counted before the open is tried: 6 get as far as the (offline) bridge, 14 are refused.
    assert sorted(r.status for r in replies) == [429] * 14 + [504] * 6
    limited = next(r for r in replies if r.status == 429)
    assert limited.error["code"] == "rate_limited" and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert (await api_client.post(path, {"wait": 0.1}, token=other)).status == 504  # per person
