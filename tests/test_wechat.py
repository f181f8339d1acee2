"""The WeChat client against the fake WeChat server, with the real Redis.

Each test uses its own appid, so the session-wide fake's counters and the
Redis token cache are per test without flushing anything.
"""

import asyncio
import contextlib
import dataclasses
import json
import socket
import uuid

import pytest
import pytest_asyncio

from models.errors import Invalid, RateLimited, Unauthorized, Unavailable, Unprocessable
from scripts.fake_wechat import TOKEN_SECONDS, fresh_code, openid_for
from server.stores import connect_redis
from server.wechat import TOKEN_MARGIN_SECONDS, WeChatClient, WeChatError

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def redis(redis_url):
    client = connect_redis(redis_url)
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.fixture
def appid():
    return f"wx-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def wechat(wechat_url, appid, redis):
    client = WeChatClient(wechat_url, appid, "test-secret", redis)
    yield client
    await client.close()


class FakeControl:
    """The fake server's test endpoints (/_fake/...), seen by one appid."""

    def __init__(self, http_client, base_url: str, appid: str):
        self.http = http_client
        self.base_url = base_url
        self.appid = appid

    async def call(self, path: str, body: dict | None = None) -> dict:
        response = await self.http.fetch(
            f"{self.base_url}/_fake/{path}", method="GET" if body is None else "POST",
            body=None if body is None else json.dumps(body))
        return json.loads(response.body)

    async def stats(self) -> dict:
        return await self.call(f"stats?appid={self.appid}")


@pytest.fixture
def fake(http_client, wechat_url, appid):
    return FakeControl(http_client, wechat_url, appid)


async def test_login_code_gives_a_stable_openid_and_no_session_key(wechat, appid):
    first = await wechat.code_to_session(fresh_code("user-ann"))
    again = await wechat.code_to_session(fresh_code("user-ann"))
    other = await wechat.code_to_session(fresh_code("user-bob"))
    assert first == again
    assert first.openid == openid_for(appid, "ann")
    assert first.unionid and first.unionid != other.unionid
    assert other.openid != first.openid
    # The fake sends a session_key; the client drops it.
    assert [f.name for f in dataclasses.fields(first)] == ["openid", "unionid"]


@pytest.mark.parametrize("prefix, error, api_code, errcode", [
    ("bad", Unauthorized, "wechat_code_invalid", 40029),
    ("nonsense", Unauthorized, "wechat_code_invalid", 40029),
    ("busy", Unavailable, "wechat_busy", -1),
    ("limit", RateLimited, "wechat_rate_limited", 45011),
])
async def test_login_code_errors_become_api_errors(wechat, prefix, error, api_code, errcode):
    with pytest.raises(error) as caught:
        await wechat.code_to_session(fresh_code(prefix))
    assert caught.value.code == api_code
    assert isinstance(caught.value.__cause__, WeChatError)
    assert caught.value.__cause__.errcode == errcode


async def test_a_login_code_works_once(wechat):
    once = fresh_code("user-cat")
    await wechat.code_to_session(once)
    with pytest.raises(Unauthorized) as caught:
        await wechat.code_to_session(once)
    assert caught.value.code == "wechat_code_used"
    assert caught.value.fields == {"code": "already used"}


async def test_rate_limit_says_when_to_retry(wechat):
    with pytest.raises(RateLimited) as caught:
        await wechat.code_to_session(fresh_code("limit"))
    assert caught.value.retry_after == 60


@contextlib.contextmanager
def port_nobody_listens_on():
    """A port that refuses connections: bound but never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_unreachable_wechat_is_unavailable(redis, appid):
    with port_nobody_listens_on() as port:
        client = WeChatClient(f"http://127.0.0.1:{port}", appid, "s", redis)
        with pytest.raises(Unavailable) as caught:
            await client.code_to_session(fresh_code("user-ann"))
        await client.close()
    assert caught.value.code == "wechat_unavailable"


async def test_phone_number_and_its_errors(wechat):
    phone_code = fresh_code("phone-13912345678")
    assert await wechat.phone_number(phone_code) == "13912345678"
    with pytest.raises(Invalid) as used:
        await wechat.phone_number(phone_code)
    assert used.value.code == "wechat_code_used"
    assert used.value.fields == {"phone_code": "already used"}
    with pytest.raises(Invalid) as bad:
        await wechat.phone_number(fresh_code("bad"))
    assert bad.value.code == "wechat_code_invalid"


async def test_access_token_is_cached_in_redis_and_shared(wechat_url, appid, wechat, redis_url,
                                                         fake):
    # A second client on its own Redis connection stands for another server process.
    other_redis = connect_redis(redis_url)
    other = WeChatClient(wechat_url, appid, "test-secret", other_redis)
    try:
        tokens = await asyncio.gather(wechat.access_token(), other.access_token(),
                                      wechat.access_token(), other.access_token())
        phones = await asyncio.gather(wechat.phone_number(fresh_code("phone-13800000001")),
                                      other.phone_number(fresh_code("phone-13800000002")))
        ttl = await other_redis.ttl(wechat.token_key)
    finally:
        await other.close()
        await other_redis.aclose(close_connection_pool=True)
    assert len(set(tokens)) == 1
    assert phones == ["13800000001", "13800000002"]
    assert (await fake.stats())["tokens_issued"] == 1
    assert TOKEN_SECONDS - TOKEN_MARGIN_SECONDS - 5 <= ttl <= TOKEN_SECONDS - TOKEN_MARGIN_SECONDS


async def test_token_is_fetched_again_when_the_cache_expires(wechat, redis, fake):
    first = await wechat.access_token()
    await redis.delete(wechat.token_key)  # what the TTL does when it lapses
    assert await wechat.phone_number(fresh_code("phone-13800000003")) == "13800000003"
    assert await wechat.access_token() != first
    assert (await fake.stats())["tokens_issued"] == 2


async def test_token_refused_by_wechat_is_refreshed_once(wechat, fake, appid):
    stale = await wechat.access_token()
    assert (await fake.call("expire_tokens", {"appid": appid}))["expired"] == 1
    # WeChat answers 42001 to the cached token; the client fetches a new one and retries.
    assert await wechat.phone_number(fresh_code("phone-13800000004")) == "13800000004"
    assert await wechat.access_token() != stale
    assert (await fake.stats())["tokens_issued"] == 2


async def test_wrong_secret_is_unavailable_not_a_crash(wechat_url, appid, redis):
    client = WeChatClient(wechat_url, appid, "bad-secret", redis)
    with pytest.raises(Unavailable) as caught:
        await client.phone_number(fresh_code("phone-13800000005"))
    await client.close()
    assert caught.value.code == "wechat_error"
    assert caught.value.__cause__.errcode == 40125
    assert await redis.get(client.token_key) is None


async def test_subscribe_message_needs_a_credit(wechat, fake, appid):
    openid = openid_for(appid, "dan")
    template = "tmpl-repair-done"
    with pytest.raises(Unprocessable) as refused:
        await wechat.send_subscribe_message(openid, template, {"thing1": "Repair done"})
    assert refused.value.code == "wechat_not_subscribed"
    assert refused.value.__cause__.errcode == 43101

    granted = await fake.call("credits", {"openid": openid, "template_id": template, "count": 1})
    assert granted == {"credits": 1}
    await wechat.send_subscribe_message(openid, template,
                                        {"thing1": "Repair done", "time2": {"value": "10:00"}},
                                        page="pages/tickets/detail?id=7")
    [sent] = (await fake.stats())["sent"]
    assert sent == {"appid": appid, "touser": openid, "template_id": template,
                    "page": "pages/tickets/detail?id=7",
                    "data": {"thing1": {"value": "Repair done"}, "time2": {"value": "10:00"}}}

    with pytest.raises(Unprocessable):  # the one credit is used up
        await wechat.send_subscribe_message(openid, template, {"thing1": "Again"})
