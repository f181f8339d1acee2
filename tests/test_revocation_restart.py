"""Sign-outs and ended staff sessions survive a Redis that restarts empty (no persistence):
MongoDB holds them, and Redis is rebuilt from it before a token is accepted again."""

import pytest

from models.errors import Unauthorized
from tests.builders import STAFF_PASSWORD, make_community
from tests.waiting import until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis_url(restartable_redis):
    return restartable_redis.url


async def login(api_client, username):
    reply = await api_client.post("/api/auth/staff", {"username": username, "password": STAFF_PASSWORD})
    assert reply.status == 200, reply.body
    return reply.body


async def test_signed_out_and_disabled_sessions_stay_ended_after_redis_restarts_empty(
        app, api_client, restartable_redis):
    c = await make_community(app, "rr")
    signed_out = await login(api_client, "rr-security")
    disabled = await login(api_client, "rr-maintenance")
    kept = await login(api_client, "rr-manager")
    reply = await api_client.post("/api/auth/logout", {"refresh_token": signed_out["refresh_token"]},
                                  token=signed_out["access_token"])
    assert reply.status == 204
    member = f"/api/communities/{c.id}/staff/{c.staff['maintenance']}/active"
    assert (await api_client.put(member, {"active": False}, token=c.tokens["admin"])).status == 200
    for session in (signed_out, disabled):
        assert (await api_client.get("/api/me", token=session["access_token"])).status == 401

    restartable_redis.restart()

    async def served():  # once the breaker sees Redis back; a login in force still works
        return (await api_client.get("/api/me", token=kept["access_token"])).status == 200
    await until(served, 20)
    reply = await api_client.get("/api/me", token=signed_out["access_token"])
    assert (reply.status, reply.body["error"]["code"]) == (401, "token_revoked")
    reply = await api_client.get("/api/me", token=disabled["access_token"])
    assert (reply.status, reply.body["error"]["code"]) == (401, "session_ended")


async def test_a_sign_out_holds_when_redis_forgets_again_while_it_is_rebuilt(
        app, api_client, restartable_redis):
    await make_community(app, "ra")
    signed_out = await login(api_client, "ra-security")
    reply = await api_client.post("/api/auth/logout", {"refresh_token": signed_out["refresh_token"]},
                                  token=signed_out["access_token"])
    assert reply.status == 204
    restartable_redis.restart()
    # Redis restarts again just after the denylist was put back, before the token is read
    # against it: the read finds it missing a second time.
    restartable_redis.restart_after_rebuild(app.auth.revocations)
    with pytest.raises(Unauthorized) as refused:
        await app.auth.principal(signed_out["access_token"])
    assert refused.value.code == "token_revoked"
