"""Logins and tokens over HTTP: residents through the fake WeChat server, staff by password."""

import asyncio
import base64
import json
import threading
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from jwt.warnings import InsecureKeyLengthWarning

from models import people
from models.auth import ALGORITHM, ISSUER, SPRAY_FACTOR
from models.common import ManualClock
from models.errors import RateLimited, Unauthorized
from scripts.fake_wechat import fresh_code, openid_for
from tests.builders import STAFF_PASSWORD, make_community, make_resident

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clock():
    return ManualClock(datetime.now(UTC))


async def wechat_login(api_client, name: str, **extra):
    return await api_client.post("/api/auth/wechat", {"code": fresh_code(f"user-{name}"), **extra})


@pytest_asyncio.fixture
async def staff(app):
    """One manager account, created through the real path (argon2id hash)."""
    doc = await app.staff.create("ming", STAFF_PASSWORD, "Wang Ming",
                                 {"6650c0ffee0000000000000a": ["manager"]})
    return str(doc["_id"])


async def staff_login(api_client, password=STAFF_PASSWORD, username="ming", headers=None):
    return await api_client.post("/api/auth/staff", {"username": username, "password": password},
                                 headers=headers)


def forged(claims: dict, key: str, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def segment(value: dict) -> str:
    """One part of a compact JWT, encoded by hand (for tokens PyJWT will not make)."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def staff_claims(clock, **changes) -> dict:
    """Claims that are valid in every way (the test then breaks one)."""
    now = int(clock.time())
    return {"iss": ISSUER, "sub": "6650c0ffee0000000000000b", "aud": "staff", "fam": "x",
            "iat": now, "exp": now + 600, "roles": {"6650c0ffee0000000000000a": ["admin"]},
            **changes}


# -- residents ------------------------------------------------------------------

async def test_new_and_returning_resident(app, api_client, settings):
    first = await wechat_login(api_client, "ann")
    assert first.status == 200
    assert set(first.body) == {"access_token", "refresh_token", "token_type", "expires_in",
                               "audience"}
    assert first.body["audience"] == "resident"
    me = await api_client.get("/api/me", token=first.body["access_token"])
    assert me.body == {"kind": "resident", "id": me.body["id"], "roles": {}, "communities": [],
                       "platform_admin": False}

    again = await wechat_login(api_client, "ann")
    assert (await api_client.get("/api/me", token=again.body["access_token"])).body == me.body
    other = await wechat_login(api_client, "bob")
    other_me = await api_client.get("/api/me", token=other.body["access_token"])
    assert other_me.body["id"] != me.body["id"]

    openid = openid_for(settings.wechat_appid, "ann")
    [doc] = await app.db.residents.find({"openid": openid}).to_list(None)
    assert str(doc["_id"]) == me.body["id"]
    assert doc["unionid"] and "session_key" not in doc
    for reply in (first, me, again):  # WeChat's identifiers stay on the server
        assert openid not in json.dumps(reply.body) and "session_key" not in json.dumps(reply.body)


async def test_login_with_phone_number(app, api_client):
    reply = await wechat_login(api_client, "cai", phone_code=fresh_code("phone-13912345678"))
    assert reply.status == 200
    me = await api_client.get("/api/me", token=reply.body["access_token"])
    assert (await app.residents.get(me.body["id"]))["phone"] == "13912345678"

    taken = await wechat_login(api_client, "dou", phone_code=fresh_code("phone-13912345678"))
    assert taken.status == 409
    assert taken.error["fields"] == {"phone_code": "手机号已被绑定"}


@pytest.mark.parametrize("prefix, status, error_code", [
    ("bad", 401, "wechat_code_invalid"),
    ("busy", 503, "wechat_busy"),
    ("limit", 429, "wechat_rate_limited"),
])
async def test_bad_login_codes_are_clear_errors(app, api_client, prefix, status, error_code):
    reply = await api_client.post("/api/auth/wechat", {"code": fresh_code(prefix)})
    assert reply.status == status
    assert reply.error["code"] == error_code
    if status == 429:
        assert reply.headers["Retry-After"] == "60"
    assert await app.db.residents.count_documents({}) == 0


async def test_a_login_code_works_once(api_client):
    once = fresh_code("user-eve")
    assert (await api_client.post("/api/auth/wechat", {"code": once})).status == 200
    reused = await api_client.post("/api/auth/wechat", {"code": once})
    assert reused.status == 401
    assert reused.error["code"] == "wechat_code_used"
    assert reused.error["fields"] == {"code": "已被使用"}


async def test_bad_phone_code_creates_nobody(app, api_client):
    reply = await wechat_login(api_client, "fay", phone_code=fresh_code("bad"))
    assert reply.status == 400
    assert (reply.error["code"], reply.error["fields"]) == (
        "wechat_code_invalid", {"phone_code": "无效或已过期"})
    assert await app.db.residents.count_documents({}) == 0


async def test_missing_code_names_the_field(api_client):
    reply = await api_client.post("/api/auth/wechat", {"phone_code": "phone-13900000000"})
    assert reply.status == 400
    assert set(reply.error["fields"]) == {"code"}


# -- staff ------------------------------------------------------------------------

async def test_staff_login(api_client, staff):
    reply = await staff_login(api_client)
    assert reply.status == 200
    assert reply.body["audience"] == "staff"
    me = await api_client.get("/api/me", token=reply.body["access_token"])
    assert me.body == {"kind": "staff", "id": staff, "username": "ming", "name": "Wang Ming",
                       "roles": {"6650c0ffee0000000000000a": ["manager"]},
                       "communities": [],
                       "platform_admin": False}  # a community that no longer exists is not listed


async def test_wrong_password_and_unknown_user_look_the_same(api_client, staff):
    wrong = await staff_login(api_client, password="not the password")
    unknown = await staff_login(api_client, username="nobody")
    assert wrong.status == unknown.status == 401
    assert wrong.error["code"] == unknown.error["code"] == "bad_credentials"
    assert wrong.error["message"] == unknown.error["message"]


async def test_lockout_after_repeated_failures(api_client, staff, settings):
    for _ in range(settings.login_max_failures):
        assert (await staff_login(api_client, password="guess")).status == 401
    locked = await staff_login(api_client)  # even the right password, while locked
    assert locked.status == 429
    assert locked.error["code"] == "locked_out"
    assert 0 < int(locked.headers["Retry-After"]) <= settings.login_lockout_seconds


async def test_parallel_wrong_passwords_cannot_outrun_the_lockout(api_client, staff, settings):
    replies = await asyncio.gather(*(staff_login(api_client, password=f"guess {n}")
                                     for n in range(30)))
    statuses = [r.status for r in replies]
    # Each attempt is counted before its password is checked: only the allowed number of
    # guesses is ever verified, whatever their concurrency.
    assert statuses.count(401) == settings.login_max_failures
    assert statuses.count(429) == 30 - settings.login_max_failures
    assert (await staff_login(api_client)).status == 429


async def test_lockout_is_per_address_and_spraying_locks_the_address(app, staff, settings):
    limit = settings.login_max_failures
    for _ in range(limit):
        with pytest.raises(Unauthorized):
            await app.auth.login_staff("ming", "guess", "203.0.113.7")
    with pytest.raises(RateLimited):
        await app.auth.login_staff("ming", STAFF_PASSWORD, "203.0.113.7")
    # The attacker's failures do not lock the colleague out at their own desk.
    assert (await app.auth.login_staff("ming", STAFF_PASSWORD, "198.51.100.2"))["access_token"]

    # One address failing across many usernames is locked for all of them.
    for n in range(limit * SPRAY_FACTOR - limit):
        with pytest.raises(Unauthorized):
            await app.auth.login_staff(f"user{n % (limit * 2)}", "guess", "203.0.113.7")
    with pytest.raises(RateLimited):
        await app.auth.login_staff("someone-new", "guess", "203.0.113.7")


async def test_a_login_verifying_its_password_does_not_hold_up_other_requests(api_client, staff,
                                                                              monkeypatch):
    # argon2id at its production cost is ~0.1 s of CPU, far more on a loaded machine: on the
    # event loop it would stall every request of the process (gate traffic too). Here the
    # verify itself waits until another request has been answered, so the test's outcome is an
    # ordering, not a time: on the loop, nothing else could be answered and the wait runs out.
    started, answered, waits = threading.Event(), threading.Event(), []

    class Watched(PasswordHasher):
        def verify(self, hash, password):
            started.set()
            waits.append(answered.wait(30))
            return super().verify(hash, password)

    monkeypatch.setattr(people, "_hasher", Watched())
    login = asyncio.create_task(staff_login(api_client))
    assert await asyncio.to_thread(started.wait, 30)
    health = await api_client.get("/healthz")
    answered.set()
    assert health.status == 200 and not login.done()
    assert (await login).status == 200
    assert waits == [True]  # the verify went on only once the other request had its answer


async def test_a_successful_login_resets_the_failure_count(api_client, staff, settings):
    for _ in range(settings.login_max_failures - 1):
        await staff_login(api_client, password="guess")
    assert (await staff_login(api_client)).status == 200
    for _ in range(settings.login_max_failures - 1):
        await staff_login(api_client, password="guess")
    assert (await staff_login(api_client)).status == 200


# -- refresh and logout -----------------------------------------------------------

async def test_refresh_rotates_and_reuse_revokes_the_family(api_client, clock):
    login = (await wechat_login(api_client, "gao")).body
    clock.advance(60)
    rotated = await api_client.post("/api/auth/refresh", {"refresh_token": login["refresh_token"]})
    assert rotated.status == 200
    new = rotated.body
    assert new["refresh_token"] != login["refresh_token"]
    assert new["access_token"] != login["access_token"]
    assert (await api_client.get("/api/me", token=new["access_token"])).status == 200

    # The old refresh token again: someone copied it, so the whole login is revoked.
    reused = await api_client.post("/api/auth/refresh", {"refresh_token": login["refresh_token"]})
    assert (reused.status, reused.error["code"]) == (401, "refresh_reused")
    newer = await api_client.post("/api/auth/refresh", {"refresh_token": new["refresh_token"]})
    assert (newer.status, newer.error["code"]) == (401, "bad_refresh_token")
    me = await api_client.get("/api/me", token=new["access_token"])
    assert (me.status, me.error["code"]) == (401, "token_revoked")


async def test_other_logins_survive_a_revoked_family(api_client):
    stolen = (await wechat_login(api_client, "hu")).body
    phone = (await wechat_login(api_client, "hu")).body  # the same person, a second login
    await api_client.post("/api/auth/refresh", {"refresh_token": stolen["refresh_token"]})
    await api_client.post("/api/auth/refresh", {"refresh_token": stolen["refresh_token"]})
    assert (await api_client.get("/api/me", token=phone["access_token"])).status == 200
    assert (await api_client.post("/api/auth/refresh",
                                  {"refresh_token": phone["refresh_token"]})).status == 200


async def test_unknown_refresh_token(api_client):
    reply = await api_client.post("/api/auth/refresh", {"refresh_token": "made-up"})
    assert (reply.status, reply.error["code"]) == (401, "bad_refresh_token")


async def test_refresh_token_expires(api_client, clock, settings):
    login = (await wechat_login(api_client, "jin")).body
    clock.advance(timedelta(days=settings.refresh_token_days, seconds=1).total_seconds())
    reply = await api_client.post("/api/auth/refresh", {"refresh_token": login["refresh_token"]})
    assert (reply.status, reply.error["code"]) == (401, "bad_refresh_token")


async def test_logout_revokes_access_and_refresh(api_client, staff):
    login = (await staff_login(api_client)).body
    body = {"refresh_token": login["refresh_token"]}
    assert (await api_client.post("/api/auth/logout", body)).status == 401  # needs the access token
    reply = await api_client.post("/api/auth/logout", body, token=login["access_token"])
    assert reply.status == 204
    me = await api_client.get("/api/me", token=login["access_token"])
    assert (me.status, me.error["code"]) == (401, "token_revoked")
    again = await api_client.post("/api/auth/refresh", body)
    assert (again.status, again.error["code"]) == (401, "bad_refresh_token")


async def test_cannot_log_out_someone_else(api_client, staff):
    mine = (await staff_login(api_client)).body
    theirs = (await wechat_login(api_client, "kai")).body
    reply = await api_client.post("/api/auth/logout", {"refresh_token": theirs["refresh_token"]},
                                  token=mine["access_token"])
    assert reply.status == 401
    assert (await api_client.get("/api/me", token=theirs["access_token"])).status == 200


# -- access tokens ----------------------------------------------------------------

async def test_expired_access_token_and_refreshing_after_it(api_client, clock, settings):
    login = (await wechat_login(api_client, "lan")).body
    clock.advance(settings.access_token_seconds - 1)
    assert (await api_client.get("/api/me", token=login["access_token"])).status == 200
    clock.advance(1)
    expired = await api_client.get("/api/me", token=login["access_token"])
    assert (expired.status, expired.error["code"]) == (401, "token_expired")
    # Issued by a clock ahead of the wall clock: still valid (time is the app's clock).
    fresh = (await api_client.post("/api/auth/refresh",
                                   {"refresh_token": login["refresh_token"]})).body
    assert (await api_client.get("/api/me", token=fresh["access_token"])).status == 200


async def test_tampered_token_is_refused(api_client):
    login = (await wechat_login(api_client, "mei")).body
    assert (await api_client.get("/api/me", token=login["access_token"])).status == 200
    header, payload, signature = login["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "0" * 24
    for token in (f"{header}.{segment(claims)}.{signature}",
                  forged(claims, "another key that is long enough for HS256 use")):
        reply = await api_client.get("/api/me", token=token)
        assert (reply.status, reply.error["code"]) == (401, "bad_token")


async def test_only_the_pinned_algorithm_is_accepted(app, api_client, clock):
    claims = staff_claims(clock)
    assert (await api_client.get("/api/me", token=forged(claims, app.auth.key))).status == 200
    with warnings.catch_warnings():  # our key is short for HS512; fine for this forgery
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        other_algorithm = forged(claims, app.auth.key, "HS512")
    alg_none = f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."
    for token in (alg_none, other_algorithm):
        reply = await api_client.get("/api/me", token=token)
        assert (reply.status, reply.error["code"]) == (401, "bad_token")


async def test_token_for_another_audience_is_refused(app, api_client, clock):
    token = forged(staff_claims(clock, aud="gate"), app.auth.key)
    reply = await api_client.get("/api/me", token=token)
    assert (reply.status, reply.error["code"]) == (401, "bad_token")


async def test_resident_token_on_staff_route_and_staff_token_on_resident_route(app, api_client):
    c = await make_community(app, "aud")
    _, resident_token = await make_resident(app, c, "nan")
    staff_only = await api_client.get(f"/api/communities/{c.id}/staff", token=resident_token)
    assert staff_only.status == 403
    resident_only = await api_client.get("/api/me/bindings", token=c.tokens["admin"])
    assert resident_only.status == 403
    assert (await api_client.get(f"/api/communities/{c.id}/staff",
                                 token=c.tokens["admin"])).status == 200


async def test_simultaneous_first_logins_are_one_resident(app, api_client):
    replies = await asyncio.gather(*(wechat_login(api_client, "ou") for _ in range(4)))
    assert [r.status for r in replies] == [200] * 4
    assert await app.db.residents.count_documents({}) == 1
