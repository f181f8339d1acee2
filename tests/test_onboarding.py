"""Onboarding a real community through the API: communities, staff of several communities,
places by hand, and residents finding their room before they are linked to it."""

import pytest
from bson import ObjectId

from tests.builders import STAFF_PASSWORD, make_community, make_platform_admin, make_resident

pytestmark = pytest.mark.asyncio


async def resident_without_rooms(app) -> str:
    resident = await app.residents.from_wechat("openid-newcomer", None, None)
    return (await app.auth.start_session(str(resident["_id"]), "resident"))["access_token"]


NEW = {"name": "翠苑一区", "code": "cuiyuan-1", "address": "文一路1号"}


async def test_platform_admin_creates_a_community_others_may_not(app, api_client):
    a = await make_community(app, "a")
    boss = await make_platform_admin(app)

    reply = await api_client.post("/api/communities", NEW, token=a.tokens["admin"])
    assert reply.status == 403  # a community's admin does not create communities
    assert (await api_client.post("/api/communities", NEW,
                                  token=await resident_without_rooms(app))).status == 403

    reply = await api_client.post("/api/communities", NEW, token=boss)
    assert reply.status == 201
    assert reply.body["time_zone"] == "Asia/Shanghai" and reply.body["settings"] == {}
    assert (await api_client.post("/api/communities", NEW, token=boss)).status == 409

    for bad, field in (({"code": "Has Space"}, "code"), ({"time_zone": "Mars/Olympus"}, "time_zone"),
                       ({"settings": {"pass_code_seconds": 5}}, "settings.pass_code_seconds"),
                       ({"settings": {"no_such": 1}}, "settings.no_such")):
        reply = await api_client.post("/api/communities", {**NEW, "code": "x2", **bad}, token=boss)
        assert reply.status == 400 and field in reply.error["fields"], (bad, reply.body)
    assert await app.db.communities.count_documents({"code": "x2"}) == 0


async def test_who_sees_which_communities(app, api_client):
    a = await make_community(app, "a")
    await make_community(app, "b")
    boss = await make_platform_admin(app)
    created = (await api_client.post("/api/communities", NEW, token=boss)).body

    listed = await api_client.get("/api/communities", token=boss)
    assert sorted(c["code"] for c in listed.body) == ["a", "b", "cuiyuan-1"]
    assert [c["code"] for c in (await api_client.get("/api/communities",
                                                     token=a.tokens["admin"])).body] == ["a"]
    me = await api_client.get("/api/me", token=boss)
    assert me.body["platform_admin"] is True
    assert {c["code"]: c["roles"] for c in me.body["communities"]} == {
        "a": ["admin"], "b": ["admin"], "cuiyuan-1": ["admin"]}
    assert {c["time_zone"] for c in me.body["communities"]} == {"Asia/Shanghai"}

    # A platform admin acts as an admin in a community with no roles of their own there...
    reply = await api_client.post(f"/api/communities/{created['id']}/staff",
                                  {"username": "zhao", "name": "赵经理",
                                   "password": "first password", "roles": ["admin"]}, token=boss)
    assert reply.status == 201
    # ...but a community that does not exist is still not found.
    missing = str(ObjectId())
    assert (await api_client.get(f"/api/communities/{missing}/staff", token=boss)).status == 404
    assert (await api_client.post(f"/api/communities/{missing}/places", {"path": "1"},
                                  token=boss)).status == 404
    assert await app.db.places.count_documents({"community_id": ObjectId(missing)}) == 0


async def test_community_admin_edits_their_community(app, api_client):
    a = await make_community(app, "a")
    b = await make_community(app, "b")
    url = f"/api/communities/{a.id}"

    reply = await api_client.patch(url, {"name": "Garden A 花园", "time_zone": "Asia/Urumqi",
                                         "settings": {"pass_code_seconds": 90,
                                                      "invitation_max_days": 3}},
                                   token=a.tokens["admin"])
    assert reply.status == 200
    assert (reply.body["name"], reply.body["time_zone"], reply.body["settings"]) == (
        "Garden A 花园", "Asia/Urumqi", {"pass_code_seconds": 90, "invitation_max_days": 3})
    assert reply.body["address"] == "a Road 1" and reply.body["code"] == "a"  # untouched

    reply = await api_client.patch(url, {"settings": {"pass_code_seconds": None}},
                                   token=a.tokens["admin"])
    assert reply.body["settings"] == {"invitation_max_days": 3}  # back to the default
    assert (await app.passes.community_settings(a.id)).invitation_max_days == 3

    reply = await api_client.patch(url, {"code": "renamed"}, token=a.tokens["admin"])
    assert reply.status == 400 and "code" in reply.error["fields"]
    reply = await api_client.patch(url, {"time_zone": "Nowhere/Land"}, token=a.tokens["admin"])
    assert reply.status == 400 and "time_zone" in reply.error["fields"]
    assert (await api_client.patch(url, {"name": "x"}, token=a.tokens["manager"])).status == 403
    assert (await api_client.patch(url, {"name": "x"}, token=b.tokens["admin"])).status == 404
    assert (await app.places.community(a.id))["name"] == "Garden A 花园"


async def test_staff_member_of_two_communities_keeps_one_account(app, api_client):
    a = await make_community(app, "a")
    b = await make_community(app, "b")
    reply = await api_client.post(f"/api/communities/{a.id}/staff",
                                  {"username": "wang", "password": "long enough pw",
                                   "roles": ["manager"]}, token=a.tokens["admin"])
    assert reply.status == 400 and "name" in reply.error["fields"]  # a new account needs one
    reply = await api_client.post(f"/api/communities/{a.id}/staff",
                                  {"username": "wang", "password": "long enough pw",
                                   "name": "Wang", "roles": ["manager"]}, token=a.tokens["admin"])
    assert reply.status == 201

    staff_b = f"/api/communities/{b.id}/staff"
    reply = await api_client.post(staff_b, {"username": "wang", "roles": ["maintenance"]},
                                  token=b.tokens["admin"])
    assert reply.status == 201 and reply.body["roles"] == ["maintenance"]
    assert reply.body["id"] == (await app.db.staff.find_one({"username": "wang"}))["_id"].__str__()
    reply = await api_client.post(staff_b, {"username": "wang", "roles": ["security"]},
                                  token=b.tokens["admin"])
    assert reply.status == 409
    reply = await api_client.post(staff_b, {"username": "nobody", "roles": ["security"]},
                                  token=b.tokens["admin"])
    assert reply.status == 404 and "username" in reply.error["fields"]

    login = await api_client.post("/api/auth/staff", {"username": "wang",
                                                      "password": "long enough pw"})
    me = await api_client.get("/api/me", token=login.body["access_token"])
    assert {c["code"]: c["roles"] for c in me.body["communities"]} == {
        "a": ["manager"], "b": ["maintenance"]}
    # A's view of the member shows A's roles only.
    [wang] = [s for s in (await api_client.get(f"/api/communities/{a.id}/staff",
                                               token=a.tokens["admin"])).body
              if s["username"] == "wang"]
    assert wang["roles"] == ["manager"]


async def test_places_by_hand(app, api_client):
    a = await make_community(app, "a")
    base = f"/api/communities/{a.id}/places"
    for path in ("3", "3-2", "3-2-1201"):
        reply = await api_client.post(base, {"path": path}, token=a.tokens["manager"])
        assert reply.status == 201, reply.body
    room = reply.body
    assert (room["kind"], room["name"]) == ("room", "3-2-1201")

    reply = await api_client.patch(f"{base}/{room['id']}", {"name": "3栋2单元1201室",
                                                            "area_m2": 89.5},
                                   token=a.tokens["manager"])
    assert reply.status == 200 and (reply.body["name"], reply.body["area_m2"]) == (
        "3栋2单元1201室", 89.5)
    reply = await api_client.patch(f"{base}/{room['id']}", {"path": "3-2-1301"},
                                   token=a.tokens["manager"])
    assert reply.status == 400 and "path" in reply.error["fields"]
    assert (await api_client.patch(f"{base}/{room['id']}", {"name": "x"},
                                   token=a.tokens["security"])).status == 403
    assert (await app.places.place_by_path(a.id, "3-2-1201"))["name"] == "3栋2单元1201室"


async def test_resident_browses_rooms_to_ask_for_one_and_sees_no_one(app, api_client):
    a = await make_community(app, "a")
    b = await make_community(app, "b")
    await make_resident(app, a, "ann", room="1-1-101")
    await app.db.residents.update_one({}, {"$set": {"name": "Ann Owner", "phone": "13800138000"}})
    me = await resident_without_rooms(app)
    directory = f"/api/communities/{a.id}/directory"

    assert "a" in [c["code"] for c in (await api_client.get("/api/communities", token=me)).body]
    buildings = await api_client.get(directory, token=me)
    assert buildings.status == 200
    assert buildings.body == [{"path": "1", "kind": "building", "name": "1"}]
    units = await api_client.get(f"{directory}?under=1", token=me)
    assert [u["path"] for u in units.body] == ["1-1", "1-2"]
    rooms = await api_client.get(f"{directory}?under=1-1", token=me)
    assert [(r["path"], r["kind"]) for r in rooms.body] == [("1-1-101", "room"), ("1-1-102", "room")]
    everything = str([buildings.body, units.body, rooms.body])
    assert "Ann" not in everything and "138" not in everything and "resident" not in everything
    reply = await api_client.get(f"{directory}?under=1-1-101", token=me)
    assert reply.status == 400 and "under" in reply.error["fields"]

    reply = await api_client.post("/api/me/bindings", {"community_id": a.id,
                                                       "room_path": rooms.body[0]["path"],
                                                       "relation": "family"}, token=me)
    assert reply.status == 201 and reply.body["state"] == "pending"

    # Browsing the directory gives nothing else in the community.
    for path in ("residents", "places", "staff", "bindings", "access-log", "gates"):
        assert (await api_client.get(f"/api/communities/{a.id}/{path}", token=me)).status == 404
    assert (await api_client.get(f"/api/communities/{ObjectId()}/directory",
                                 token=me)).status == 404
    # Staff keep to their own communities here too.
    assert (await api_client.get(directory, token=b.tokens["admin"])).status == 404
    assert (await api_client.get(directory, token=a.tokens["maintenance"])).status == 200


async def test_password_rules_for_new_accounts(app, api_client):
    a = await make_community(app, "a")
    reply = await api_client.post(f"/api/communities/{a.id}/staff",
                                  {"username": "li", "password": "short", "name": "Li",
                                   "roles": ["security"]}, token=a.tokens["admin"])
    assert reply.status == 400 and "password" in reply.error["fields"]
    reply = await api_client.post("/api/auth/staff", {"username": "li", "password": STAFF_PASSWORD})
    assert reply.status == 401


async def test_gate_hours_follow_the_communitys_time_zone(app, api_client):
    boss = await make_platform_admin(app)
    zones = {}
    for code, zone in (("sh", None), ("ber", "Europe/Berlin")):
        body = {"name": code, "code": code, **({"time_zone": zone} if zone else {})}
        cid = (await api_client.post("/api/communities", body, token=boss)).body["id"]
        config = await api_client.get(f"/api/communities/{cid}/pass-config", token=boss)
        zones[code] = config.body["time_zone"]  # the bridges' rules read its wall clock
    assert zones == {"sh": "Asia/Shanghai", "ber": "Europe/Berlin"}


async def test_the_api_document_says_who_may_call_each_route(app, api_client):
    paths = (await api_client.get("/api/openapi.json")).body["paths"]
    assert "platform admins" in paths["/api/communities"]["post"]["description"]
    browse = paths["/api/communities/{community_id}/directory"]["get"]["description"]
    assert "any resident" in browse
    edit = paths["/api/communities/{community_id}"]["patch"]["description"]
    assert "admin" in edit and "resident" not in edit
