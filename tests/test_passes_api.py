"""Passes end to end over HTTP against the real stores."""

import base64
import struct
from datetime import UTC, datetime, timedelta

import base45
import pytest
from nacl.signing import VerifyKey

from models.common import ManualClock
from tests.browser import decode_qr
from tests.builders import make_community, make_resident

pytestmark = pytest.mark.asyncio
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in China


@pytest.fixture
def clock():
    return ManualClock(START)


def iso(dt: datetime) -> str:
    return dt.isoformat()


async def scan(api, c, token, gate="main", direction="in", role="security"):
    reply = await api.post(f"/api/communities/{c.id}/gates/{c.gates[gate]}/check",
                           {"token": token, "direction": direction}, token=c.tokens[role])
    assert reply.status == 200, reply.body
    return reply.body


async def test_resident_code_opens_its_gates_once(app, api_client):
    c = await make_community(app, "rc")
    _, token = await make_resident(app, c, "rc-a", room="1-1-101")
    code = await api_client.get(f"/api/communities/{c.id}/code", token=token)
    assert code.status == 200
    body = code.body
    assert body["kind"] == "resident" and body["scope"] == ["1-1-101"]
    assert body["lifetime_seconds"] == 60
    # the times as datetime.isoformat writes them (the answer's format before they were cached)
    assert body["not_before"] == START.isoformat()
    assert body["expires_at"] == (START + timedelta(seconds=60)).isoformat()
    assert (await scan(api_client, c, body["token"], "u1-1"))["reason"] == "ok"
    assert (await scan(api_client, c, body["token"], "main"))["reason"] == "replayed"
    fresh = (await api_client.get(f"/api/communities/{c.id}/code", token=token)).body["token"]
    app.clock.advance(66)
    assert (await scan(api_client, c, fresh))["reason"] == "expired"
    # Not signed in, another community, a role without gates.check.
    assert (await api_client.get(f"/api/communities/{c.id}/code")).status == 401
    other = await make_community(app, "rc2")
    assert (await api_client.get(f"/api/communities/{other.id}/code", token=token)).status == 404
    reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/check",
                                  {"token": fresh}, token=c.tokens["maintenance"])
    assert reply.status == 403
    reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/check",
                                  {"token": "", "direction": "sideways"}, token=c.tokens["security"])
    assert reply.status == 400 and set(reply.error["fields"]) == {"token", "direction"}


async def test_code_images_decode_back_to_the_token(app, api_client):
    c = await make_community(app, "img")
    _, token = await make_resident(app, c, "img-a")
    for fmt in ("png", "svg"):
        body = (await api_client.get(f"/api/communities/{c.id}/code?format={fmt}_data_url",
                                     token=token)).body
        header, _, data = body["image"].partition(",")
        assert header == f"data:image/{'svg+xml' if fmt == 'svg' else 'png'};base64"
        image = base64.b64decode(data)
        if fmt == "svg":
            assert image.startswith(b"<?xml") and b"<svg" in image
        else:
            assert decode_qr(image) == body["token"]


async def test_an_independent_ed25519_verifies_a_code_with_the_published_key(app, api_client):
    """PyNaCl (libsodium) and docs/passes.md only: Base45, last 64 bytes, "XQP1" || community."""
    c = await make_community(app, "nacl")
    rid, token = await make_resident(app, c, "nacl-a", room="1-2-101")
    code = (await api_client.get(f"/api/communities/{c.id}/code", token=token)).body["token"]
    config = (await api_client.get(f"/api/communities/{c.id}/pass-config",
                                   token=c.tokens["maintenance"])).body
    raw = base45.b45decode(code)
    payload, signature = raw[:-64], raw[-64:]
    version, kind, key_id, nbf, exp = struct.unpack(">BBBII", payload[:11])
    assert (version, kind) == (1, 1)
    public = base64.b64decode(config["keys"][str(key_id)])
    VerifyKey(public).verify(b"XQP1" + bytes.fromhex(c.id) + payload, signature)
    assert payload[21:33].hex() == rid and exp - nbf == 60
    assert payload[36:38] == b"\x01\x07" and payload[38:].decode() == "1-2-101"
    assert config["skew_seconds"] == 5
    assert (await api_client.get(f"/api/communities/{c.id}/pass-config",
                                 token=token)).status == 403


async def test_tenant_code_ends_with_the_lease(app, api_client):
    c = await make_community(app, "lease")
    _, token = await make_resident(app, c, "tenant", relation="tenant",
                                   lease_end=START + timedelta(seconds=20))
    for _ in range(2):  # the second from the caller built for the first (models/auth.py)
        body = (await api_client.get(f"/api/communities/{c.id}/code", token=token)).body
        assert body["lifetime_seconds"] == 20
    app.clock.advance(25)  # lease end + the clock-skew allowance
    assert (await scan(api_client, c, body["token"]))["reason"] == "expired"
    assert (await api_client.get(f"/api/communities/{c.id}/code", token=token)).status == 404


async def test_short_code_is_one_time_and_server_only(app, api_client):
    c = await make_community(app, "short")
    _, token = await make_resident(app, c, "short-a")
    body = (await api_client.get(f"/api/communities/{c.id}/code?profile=short", token=token)).body
    digits = body["short_code"]
    assert len(digits) == 12 and digits.isdigit()
    assert (await scan(api_client, c, "000000000000"))["reason"] == "unknown_code"
    assert (await scan(api_client, c, digits))["reason"] == "ok"
    assert (await scan(api_client, c, digits))["reason"] == "unknown_code"
    assert (await scan(api_client, c, body["token"]))["reason"] == "replayed"


async def test_invitation_share_page_uses_cancel_and_trail(app, api_client):
    c = await make_community(app, "inv")
    _, token = await make_resident(app, c, "host", room="1-1-102")
    path = f"/api/communities/{c.id}/invitations"
    good = {"name": "王小明 Wang", "phone": "13800000000", "purpose": "dinner",
            "valid_from": iso(START), "valid_to": iso(START + timedelta(hours=6)),
            "max_entries": 2}
    too_far = await api_client.post(path, {**good, "valid_to": iso(START + timedelta(days=8))},
                                    token=token)
    assert too_far.status == 400 and "valid_to" in too_far.error["fields"]
    bad_gate = await api_client.post(path, {**good, "gates": ["nope"]}, token=token)
    assert bad_gate.status == 400 and "gates" in bad_gate.error["fields"]
    staff = await api_client.post(path, good, token=c.tokens["admin"])
    assert staff.status == 403

    created = await api_client.post(path, good, token=token)
    assert created.status == 201, created.body
    invite = created.body
    assert invite["gates"] == ["main", "u1-1"] and invite["state"] == "active"
    assert invite["token"] is None and invite["room_path"] == "1-1-102"
    share = invite["share_url"].rsplit("/p/", 1)[1]
    assert len(share) >= 24

    page = await api_client.get(f"/p/{share}")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "访客通行证" in page.body and "Visitor pass" in page.body
    assert "王小明 Wang" in page.body and "1-1-102" in page.body and "inv Road 1" in page.body
    assert (await api_client.get("/p/not-a-share-id")).status == 404

    shown = (await api_client.get(f"/p/{share}/code")).body
    assert shown["state"] == "active" and shown["svg"].startswith("<?xml")
    assert datetime.fromisoformat(shown["expires_at"]) == START + timedelta(seconds=60)
    assert (await scan(api_client, c, shown["token"], "u1-1"))["reason"] == "ok"
    assert (await scan(api_client, c, shown["token"], "u1-1", "out"))["reason"] == "ok"
    app.clock.advance(120)  # the page refreshes: a new code, the same pass
    again = (await api_client.get(f"/p/{share}/code")).body["token"]
    assert again != shown["token"]
    assert (await scan(api_client, c, shown["token"]))["reason"] == "expired"
    assert (await scan(api_client, c, again))["reason"] == "ok"
    assert (await scan(api_client, c, again))["reason"] == "used_up"

    mine = await api_client.get(path, token=token)
    assert [p["id"] for p in mine.body] == [invite["id"]]
    assert mine.body[0]["entries_used"] == 2 and mine.body[0]["state"] == "used_up"
    detail = (await api_client.get(f"{path}/{invite['id']}", token=token)).body
    actions = [(e["action"], e.get("result")) for e in detail["trail"]]
    assert actions[0] == ("created", None)
    assert actions[1:] == [("used", "allow"), ("used", "allow"), ("used", "deny"),
                           ("used", "allow"), ("used", "deny")]

    _, stranger = await make_resident(app, c, "stranger", room="1-1-101")
    assert (await api_client.get(f"{path}/{invite['id']}", token=stranger)).status == 404
    assert (await api_client.delete(f"{path}/{invite['id']}", token=stranger)).status == 404
    cancelled = await api_client.delete(f"{path}/{invite['id']}", token=token)
    assert cancelled.status == 200 and cancelled.body["state"] == "cancelled"
    assert (await api_client.get(f"/p/{share}/code")).body == {
        "state": "cancelled", "token": None, "expires_at": None, "svg": None}
    assert (await api_client.delete(f"{path}/{invite['id']}", token=token)).status == 409
    trail = (await api_client.get(f"{path}/{invite['id']}", token=token)).body["trail"]
    assert trail[-1]["action"] == "cancelled"


async def test_cancellation_takes_effect_at_the_next_check(app, api_client):
    c = await make_community(app, "cxl")
    _, token = await make_resident(app, c, "cxl-host")
    invite = (await api_client.post(f"/api/communities/{c.id}/invitations", {
        "name": "Li", "valid_from": iso(START), "valid_to": iso(START + timedelta(days=2)),
        "max_entries": 5}, token=token)).body
    share = invite["share_url"].rsplit("/p/", 1)[1]
    shown = (await api_client.get(f"/p/{share}/code")).body["token"]
    assert (await scan(api_client, c, shown))["reason"] == "ok"
    await api_client.delete(f"/api/communities/{c.id}/invitations/{invite['id']}", token=token)
    assert (await scan(api_client, c, shown))["reason"] == "revoked"
    config = (await api_client.get(f"/api/communities/{c.id}/pass-config",
                                   token=c.tokens["security"])).body
    assert invite["id"] in config["revoked"]


async def test_worker_pass_hours_gates_and_permissions(app, api_client):
    c = await make_community(app, "wrk")
    path = f"/api/communities/{c.id}/passes/workers"
    body = {"name": "张师傅", "company": "装修公司", "purpose": "decoration 1-1-101",
            "approval_ref": "DEC-2026-001", "room_path": "1-1-101", "gates": ["main", "u1-1"],
            "valid_from": iso(START), "valid_to": iso(START + timedelta(days=30)),
            "hours": {"start": "08:00", "end": "10:15"}, "days": ["mon", "tue", "wed", "thu", "fri"]}
    assert (await api_client.post(path, body, token=c.tokens["security"])).status == 403
    assert (await api_client.get(f"/api/communities/{c.id}/passes",
                                 token=c.tokens["maintenance"])).status == 403
    bad = await api_client.post(path, {**body, "hours": {"start": "08:10", "end": "08:10"}},
                                token=c.tokens["customer_service"])
    assert bad.status == 400 and "hours.start" in bad.error["fields"]
    created = await api_client.post(path, body, token=c.tokens["customer_service"])
    assert created.status == 201, created.body
    worker = created.body
    assert worker["hours"] == {"start": "08:00", "end": "10:15"}
    assert worker["days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert worker["approval_ref"] == "DEC-2026-001" and worker["token"]
    assert (await scan(api_client, c, worker["token"]))["reason"] == "ok"  # 10:00
    assert (await scan(api_client, c, worker["token"]))["reason"] == "ok"  # unlimited
    app.clock.advance(15 * 60)  # 10:15 local
    c.tokens["security"] = (await app.auth.start_session(c.staff["security"], "staff"))["access_token"]
    assert (await scan(api_client, c, worker["token"]))["reason"] == "outside_hours"
    app.clock.advance(5 * 86400 - 15 * 60)  # Saturday 10:00
    c.tokens["security"] = (await app.auth.start_session(c.staff["security"], "staff"))["access_token"]
    assert (await scan(api_client, c, worker["token"]))["reason"] == "outside_days"
    listed = await api_client.get(f"/api/communities/{c.id}/passes?kind=worker",
                                  token=c.tokens["security"])
    assert [p["id"] for p in listed.body] == [worker["id"]]


async def test_a_worker_window_ending_at_midnight_lets_the_worker_in_that_evening(app, api_client):
    c = await make_community(app, "wrk-night")
    created = await api_client.post(f"/api/communities/{c.id}/passes/workers", {
        "name": "夜班保洁", "purpose": "night cleaning", "approval_ref": "NC-1", "gates": ["main"],
        "valid_from": iso(START), "valid_to": iso(START + timedelta(days=2)),
        "hours": {"start": "20:00", "end": "00:00"}}, token=c.tokens["customer_service"])
    assert created.status == 201, created.body
    token = created.body["token"]
    assert (await scan(api_client, c, token))["reason"] == "outside_hours"  # 10:00 local
    app.clock.advance(12 * 3600)  # 22:00 local
    c.tokens["security"] = (await app.auth.start_session(c.staff["security"], "staff"))["access_token"]
    assert (await scan(api_client, c, token))["reason"] == "ok"


async def test_walk_in_is_printable_single_entry(app, api_client):
    c = await make_community(app, "walk")
    path = f"/api/communities/{c.id}/passes/walkins?format=png_data_url"
    body = {"name": "Courier", "purpose": "delivery", "room_path": "1-2-101"}
    assert (await api_client.post(path, body, token=c.tokens["customer_service"])).status == 403
    bad = await api_client.post(path, {**body, "room_path": "9-9-999"}, token=c.tokens["security"])
    assert bad.status == 400 and "room_path" in bad.error["fields"]
    created = await api_client.post(path, body, token=c.tokens["security"])
    assert created.status == 201, created.body
    walk = created.body
    assert walk["gates"] == ["main"]  # no unit door covers building 1's unit 2
    png = base64.b64decode(walk["image"].partition(",")[2])
    assert decode_qr(png) == walk["token"]
    assert (await scan(api_client, c, walk["token"], "u1-1"))["reason"] == "gate_not_allowed"
    result = await scan(api_client, c, walk["token"])
    assert result == {"allow": True, "reason": "ok", "kind": "visitor", "pass_id": walk["id"],
                      "subject": walk["id"]}
    assert (await scan(api_client, c, walk["token"]))["reason"] == "used_up"
    detail = (await api_client.get(f"/api/communities/{c.id}/passes/{walk['id']}",
                                   token=c.tokens["manager"])).body
    assert [(e["action"], e.get("result")) for e in detail["trail"]] == [
        ("created", None), ("used", "deny"), ("used", "allow"), ("used", "deny")]
    app.clock.advance(5 * 3600)
    manager = (await app.auth.start_session(c.staff["manager"], "staff"))["access_token"]
    detail = (await api_client.get(f"/api/communities/{c.id}/passes/{walk['id']}",
                                   token=manager)).body
    assert detail["state"] == "expired" and detail["trail"][-1]["action"] == "expired"
    maintenance = (await app.auth.start_session(c.staff["maintenance"], "staff"))["access_token"]
    cancel = await api_client.delete(f"/api/communities/{c.id}/passes/{walk['id']}?reason=x",
                                     token=maintenance)
    assert cancel.status == 403


async def test_suspension_and_access_log_pages(app, api_client):
    c = await make_community(app, "sus")
    rid, token = await make_resident(app, c, "sus-a")
    for _ in range(3):
        code = (await api_client.get(f"/api/communities/{c.id}/code", token=token)).body["token"]
        await scan(api_client, c, code)
        app.clock.advance(1)
    reply = await api_client.post(f"/api/communities/{c.id}/suspensions",
                                  {"subject_id": rid, "reason": "moved out, keys returned"},
                                  token=c.tokens["security"])
    assert reply.status == 204
    assert (await scan(api_client, c, code))["reason"] == "revoked"
    page1 = await app.access_log.query(c.id, subject=rid, limit=2)
    page2 = await app.access_log.query(c.id, subject=rid, limit=2, cursor=page1["next_cursor"])
    assert [i["reason"] for i in page1["items"] + page2["items"]] == \
        ["revoked", "ok", "ok", "ok"]
    assert page2["next_cursor"] is None
    assert {i["source"] for i in page1["items"]} == {"scanner"}
    denied = await app.access_log.query(c.id, result="deny", gate_id=c.gates["main"])
    assert [i["reason"] for i in denied["items"]] == ["revoked"]
    lifted = await api_client.delete(f"/api/communities/{c.id}/suspensions/{rid}",
                                     token=c.tokens["security"])
    assert lifted.status == 204
    code = (await api_client.get(f"/api/communities/{c.id}/code", token=token)).body["token"]
    assert (await scan(api_client, c, code))["reason"] == "ok"
