"""Changing what a staff member may do ends their sessions at once, in every process."""

import pytest
import pytest_asyncio

from models.errors import Unauthorized
from server.app import XiaoquApp
from server.stores import connect_mongo, connect_redis
from tests.builders import STAFF_PASSWORD, change_directly, make_community

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def other_process(app, settings):
    """A second application on the same stores, as another server process would be."""
    other = XiaoquApp(settings, connect_mongo(settings.mongodb_uri),
                      connect_redis(settings.redis_url))
    yield other
    await other.close()


async def login(api_client, username, password=STAFF_PASSWORD):
    return await api_client.post("/api/auth/staff", {"username": username, "password": password})


async def test_removing_roles_ends_the_members_sessions_everywhere(app, api_client,
                                                                   other_process):
    c = await make_community(app, "rm")
    guard = (await login(api_client, "rm-security")).body
    token = guard["access_token"]
    log = f"/api/communities/{c.id}/access-log"
    assert (await api_client.get(log, token=token)).status == 200
    await other_process.auth.principal(token)  # the other process has verified it once

    reply = await api_client.put(f"/api/communities/{c.id}/staff/{c.staff['security']}",
                                 {"roles": []}, token=c.tokens["admin"])
    assert reply.status == 200
    assert (await api_client.get(log, token=token)).status == 401
    with pytest.raises(Unauthorized):
        await other_process.auth.principal(token)
    refreshed = await api_client.post("/api/auth/refresh",
                                      {"refresh_token": guard["refresh_token"]})
    assert refreshed.status == 401


async def test_a_role_change_takes_effect_on_the_next_request(app, api_client):
    c = await make_community(app, "rc")
    token = (await login(api_client, "rc-security")).body["access_token"]
    await api_client.put(f"/api/communities/{c.id}/staff/{c.staff['security']}",
                         {"roles": ["maintenance"]}, token=c.tokens["admin"])
    assert (await api_client.get(f"/api/communities/{c.id}/access-log", token=token)).status == 401
    fresh = (await login(api_client, "rc-security")).body["access_token"]
    reply = await api_client.get(f"/api/communities/{c.id}/access-log", token=fresh)
    assert reply.status == 403


async def test_disable_and_enable_an_account(app, api_client, other_process):
    c = await make_community(app, "da")
    member = f"/api/communities/{c.id}/staff/{c.staff['maintenance']}"
    session = (await login(api_client, "da-maintenance")).body
    assert (await api_client.put(f"{member}/active", {"active": False},
                                 token=c.tokens["manager"])).status == 403  # admins only

    reply = await api_client.put(f"{member}/active", {"active": False}, token=c.tokens["admin"])
    assert reply.status == 200 and reply.body["active"] is False
    with pytest.raises(Unauthorized):
        await other_process.auth.principal(session["access_token"])
    assert (await api_client.get("/api/me", token=session["access_token"])).status == 401
    assert (await api_client.post("/api/auth/refresh",
                                  {"refresh_token": session["refresh_token"]})).status == 401
    assert (await login(api_client, "da-maintenance")).status == 401

    reply = await api_client.put(f"{member}/active", {"active": True}, token=c.tokens["admin"])
    assert reply.body["active"] is True
    # The old login stays ended; a new one works.
    assert (await api_client.post("/api/auth/refresh",
                                  {"refresh_token": session["refresh_token"]})).status == 401
    assert (await login(api_client, "da-maintenance")).status == 200


async def test_an_account_working_elsewhere_is_not_disabled_from_here(app, api_client):
    a = await make_community(app, "ea")
    b = await make_community(app, "eb")
    await change_directly(app, "staff", {"username": "ea-security"},
                          {"$set": {f"roles.{b.id}": ["security"]}})
    reply = await api_client.put(f"/api/communities/{a.id}/staff/{a.staff['security']}/active",
                                 {"active": False}, token=a.tokens["admin"])
    assert reply.status == 403
    assert (await login(api_client, "ea-security")).status == 200


async def test_the_last_admin_cannot_be_removed(app, api_client):
    c = await make_community(app, "la")
    admin = f"/api/communities/{c.id}/staff/{c.staff['admin']}"
    for roles in (["manager"], []):
        reply = await api_client.put(admin, {"roles": roles}, token=c.tokens["admin"])
        assert reply.status == 409 and reply.error["code"] == "last_admin"
    reply = await api_client.put(f"{admin}/active", {"active": False}, token=c.tokens["admin"])
    assert reply.status == 409 and reply.error["code"] == "own_account"
    assert (await api_client.get(f"/api/communities/{c.id}/staff",
                                 token=c.tokens["admin"])).status == 200

    second = await api_client.put(f"/api/communities/{c.id}/staff/{c.staff['manager']}",
                                  {"roles": ["manager", "admin"]}, token=c.tokens["admin"])
    assert second.status == 200
    reply = await api_client.put(admin, {"roles": ["manager"]}, token=c.tokens["admin"])
    assert reply.status == 200 and reply.body["roles"] == ["manager"]
