"""Places, staff and room bindings over HTTP against the real stores."""

from datetime import UTC, datetime, timedelta

import pytest

from models.common import ManualClock
from gate_bridge.decision import gate_covers as covers
from tests.builders import make_community, make_resident

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return ManualClock(START)


def test_gate_coverage_follows_place_paths():
    assert covers([""], "7-1-101")
    assert covers(["1-1"], "1-1-101") and covers(["1-1"], "1-1")
    assert not covers(["1-1"], "1-12-101")  # a prefix of the text is not a parent
    assert not covers(["1-1"], "1") and not covers([], "1-1-101")


@pytest.mark.asyncio
async def test_places_form_a_tree(app, api_client):
    c = await make_community(app, "a")
    admin = c.tokens["admin"]
    base = f"/api/communities/{c.id}/places"

    reply = await api_client.post(base, {"path": "2-1-301"}, token=admin)
    assert reply.status == 400 and "path" in reply.error["fields"]
    assert (await api_client.post(base, {"path": "2", "name": "Building 2"}, token=admin)).status == 201
    reply = await api_client.post(base, {"path": "2"}, token=admin)
    assert reply.status == 409
    reply = await api_client.post(base, {"path": "2-1-3-4"}, token=admin)
    assert reply.status == 400 and reply.error["fields"]["path"]

    rooms = await api_client.get(f"{base}?kind=room&under=1-1", token=admin)
    assert [p["path"] for p in rooms.body] == ["1-1-101", "1-1-102"]
    one = await api_client.get(f"{base}/{c.places['1-1']}", token=c.tokens["security"])
    assert one.body["kind"] == "unit"
    assert (await api_client.get(f"{base}/not-an-id", token=admin)).status == 404


@pytest.mark.asyncio
async def test_staff_accounts_and_roles(app, api_client):
    c = await make_community(app, "a")
    base = f"/api/communities/{c.id}/staff"
    reply = await api_client.post(base, {"username": "wang", "password": "short", "name": "Wang",
                                         "roles": ["maintenance"]}, token=c.tokens["admin"])
    assert reply.status == 400 and "password" in reply.error["fields"]
    reply = await api_client.post(base, {"username": "wang", "password": "long enough pw",
                                         "name": "Wang", "roles": ["plumber"]},
                                  token=c.tokens["admin"])
    assert reply.status == 400 and "roles" in str(reply.error["fields"])
    reply = await api_client.post(base, {"username": "wang", "password": "long enough pw",
                                         "name": "Wang", "roles": ["maintenance"]},
                                  token=c.tokens["manager"])
    assert reply.status == 403  # only admins create accounts
    reply = await api_client.post(base, {"username": "wang", "password": "long enough pw",
                                         "name": "Wang", "roles": ["maintenance"]},
                                  token=c.tokens["admin"])
    assert reply.status == 201 and reply.body["roles"] == ["maintenance"]
    assert "password_hash" not in reply.body

    login = await api_client.post("/api/auth/staff", {"username": "wang",
                                                      "password": "long enough pw"})
    assert login.status == 200
    reply = await api_client.put(f"{base}/{reply.body['id']}", {"roles": ["security"]},
                                 token=c.tokens["admin"])
    assert reply.body["roles"] == ["security"]


@pytest.mark.asyncio
async def test_binding_request_and_staff_decision(app, api_client, clock):
    c = await make_community(app, "a")
    login = await app.auth.start_session(str((await app.residents.from_wechat("o-1", None, None))["_id"]),
                                         "resident")
    me = login["access_token"]

    reply = await api_client.post("/api/me/bindings", {"community_id": c.id, "room_path": "9-9-909",
                                                       "relation": "owner"}, token=me)
    assert reply.status == 400 and "room_path" in reply.error["fields"]
    reply = await api_client.post("/api/me/bindings", {"community_id": c.id, "room_path": "1-1-102",
                                                       "relation": "tenant"}, token=me)
    assert reply.status == 400 and "lease_end" in reply.error["fields"]
    reply = await api_client.post("/api/me/bindings", {"community_id": c.id, "room_path": "1-1-102",
                                                       "relation": "owner", "note": "bought it"},
                                  token=me)
    assert reply.status == 201 and reply.body["state"] == "pending"
    link = reply.body["id"]
    # Pending: no rights in the community yet.
    assert (await api_client.get(f"/api/communities/{c.id}", token=me)).status == 404

    decide = f"/api/communities/{c.id}/bindings/{link}/decision"
    reply = await api_client.post(decide, {"action": "reject"}, token=c.tokens["customer_service"])
    assert reply.status == 400 and "reason" in reply.error["fields"]
    reply = await api_client.post(decide, {"action": "approve"}, token=c.tokens["maintenance"])
    assert reply.status == 403
    reply = await api_client.post(decide, {"action": "approve"}, token=c.tokens["customer_service"])
    assert reply.status == 200 and reply.body["state"] == "approved"
    reply = await api_client.post(decide, {"action": "approve"}, token=c.tokens["customer_service"])
    assert reply.status == 409

    mine = await api_client.get("/api/me/bindings", token=me)
    assert [(b["state"], b["active"]) for b in mine.body] == [("approved", True)]
    assert (await api_client.get(f"/api/communities/{c.id}", token=me)).status == 200

    reply = await api_client.post(decide, {"action": "revoke", "reason": "moved out"},
                                  token=c.tokens["manager"])
    assert reply.body["state"] == "revoked"
    assert [h["action"] for h in reply.body["history"]] == ["request", "approve", "revoke"]
    assert (await api_client.get(f"/api/communities/{c.id}", token=me)).status == 404


@pytest.mark.asyncio
async def test_owner_decides_for_family_and_tenant_lease_lapses(app, api_client, clock):
    c = await make_community(app, "a")
    _, owner = await make_resident(app, c, "owner", room="1-1-101")
    tenant_id, tenant = await make_resident(app, c, "ten", room="1-1-102", relation="tenant",
                                            lease_end=START + timedelta(days=30))
    newcomer = await app.auth.start_session(
        str((await app.residents.from_wechat("o-kid", None, None))["_id"]), "resident")
    reply = await api_client.post("/api/me/bindings", {"community_id": c.id, "room_path": "1-1-101",
                                                       "relation": "family"},
                                  token=newcomer["access_token"])
    link = reply.body["id"]

    # The owner sees requests for their own room only, and may approve family.
    requests = await api_client.get(f"/api/communities/{c.id}/bindings?state=pending", token=owner)
    assert [r["id"] for r in requests.body] == [link]
    assert (await api_client.get(f"/api/communities/{c.id}/bindings?state=pending",
                                 token=tenant)).body == []
    reply = await api_client.post(f"/api/communities/{c.id}/bindings/{link}/decision",
                                  {"action": "approve"}, token=tenant)
    assert reply.status == 403
    reply = await api_client.post(f"/api/communities/{c.id}/bindings/{link}/decision",
                                  {"action": "approve"}, token=owner)
    assert reply.status == 200 and reply.body["state"] == "approved"

    assert [link["room_path"] for link in await app.bindings.active_links(tenant_id)] == ["1-1-102"]
    clock.advance(timedelta(days=31).total_seconds())
    assert await app.bindings.active_links(tenant_id) == []
    tenant = (await app.auth.start_session(tenant_id, "resident"))["access_token"]
    assert (await api_client.get(f"/api/communities/{c.id}", token=tenant)).status == 404
    mine = await api_client.get("/api/me/bindings", token=tenant)
    assert mine.body[0]["state"] == "approved" and mine.body[0]["active"] is False


@pytest.mark.asyncio
async def test_resident_withdraws_pending_request_only(app, api_client):
    c = await make_community(app, "a")
    rid, me = await make_resident(app, c, "ann")
    reply = await api_client.post("/api/me/bindings", {"community_id": c.id, "room_path": "1-2-101",
                                                       "relation": "owner"}, token=me)
    pending = reply.body["id"]
    assert (await api_client.delete(f"/api/me/bindings/{pending}", token=me)).body["state"] == "cancelled"
    approved = [b for b in (await api_client.get("/api/me/bindings", token=me)).body
                if b["state"] == "approved"][0]["id"]
    reply = await api_client.delete(f"/api/me/bindings/{approved}", token=me)
    assert reply.status == 409


@pytest.mark.asyncio
async def test_occupants_room_by_room(app, api_client, clock):
    c = await make_community(app, "occ")
    await make_resident(app, c, "ming", "1-1-102")
    await make_resident(app, c, "hua", "1-1-101", relation="tenant",
                        lease_end=START + timedelta(days=1))
    await make_resident(app, c, "li", "1-1-101", relation="family")
    await app.db.residents.update_many({}, {"$set": {"name": "someone"}})
    pending = await app.residents.from_wechat("openid-new", None, None)
    await app.bindings.request(str(pending["_id"]), c.id, "1-2-101", "owner", None)
    base = f"/api/communities/{c.id}/occupants"
    assert (await api_client.get(base, token=c.tokens["maintenance"])).status == 403
    reply = await api_client.get(base, token=c.tokens["security"])
    assert reply.status == 200, reply.body
    assert [(o["room_path"], o["relation"], o["resident"]["name"]) for o in reply.body] == [
        ("1-1-101", "family", "someone"), ("1-1-101", "tenant", "someone"),
        ("1-1-102", "owner", "someone")]  # the pending request is no occupant yet
    clock.advance(2 * 86400)  # the lease ended
    token = (await app.auth.start_session(c.staff["security"], "staff"))["access_token"]
    reply = await api_client.get(base, token=token)
    assert [o["relation"] for o in reply.body] == ["family", "owner"]
