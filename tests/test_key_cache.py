"""Revocation stays immediate in every process although requests no longer ask Redis."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from models.key_cache import (DOCUMENT_SECONDS, PING_SECONDS, STALE_SECONDS, KeyCache, announce,
                              set_announced)
from models.places import PlaceManager
from tests.builders import STAFF_PASSWORD, make_community, make_resident
from tests.test_access_log import some_traffic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def call(url: str, token: str | None = None, body: dict | None = None) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}"} if token else {},
                                     method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def other_process(app, settings):
    """A second server process on the same stores, secrets and database."""
    port = free_port()
    env = {**os.environ, "XIAOQU_DATA_DIR": str(settings.data_dir),
           "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "REDIS_URL": settings.redis_url, "WECHAT_BASE_URL": settings.wechat_base_url,
           "WECHAT_APPID": settings.wechat_appid, "HTTP_PORT": str(port),
           "GATE_PORT": "0"}  # any free port: this test uses no bridge
    log = settings.data_dir / "other-process.log"
    with open(log, "w") as errors, subprocess.Popen(
            [sys.executable, "-m", "server"], env=env, stdout=subprocess.PIPE, stderr=errors,
            text=True) as server:
        # It prints this line once it listens (or ends its output by exiting).
        assert any("xiaoqu is up" in line for line in server.stdout), log.read_text()
        yield f"http://127.0.0.1:{port}"
        server.terminate()
        server.wait(30)


@pytest.mark.asyncio
async def test_a_logout_ends_access_at_the_next_request_in_another_process(app, api_client,
                                                                           other_process):
    c = await make_community(app, "kc")
    _, resident = await make_resident(app, c, "kim")
    me = f"{other_process}/api/me"
    for _ in range(5):
        login = (await api_client.post("/api/auth/staff",
                                       {"username": "kc-security", "password": STAFF_PASSWORD})).body
        # The other process has verified (and cached) this login a few times over.
        for _ in range(3):
            assert await asyncio.to_thread(call, me, login["access_token"]) == 200
        reply = await api_client.post("/api/auth/logout", {"refresh_token": login["refresh_token"]},
                                      token=login["access_token"])
        assert reply.status == 204
        assert await asyncio.to_thread(call, me, login["access_token"]) == 401
    # A resident's room links follow a revoked binding just as fast.
    code = f"{other_process}/api/communities/{c.id}/code"
    for _ in range(2):  # the second from the caller the other process built for the first
        assert await asyncio.to_thread(call, code, resident) == 200
    [link] = await app.bindings.of_resident((await app.auth.principal(resident)).id)
    await api_client.post(f"/api/communities/{c.id}/bindings/{link['_id']}/decision",
                          {"action": "revoke", "reason": "moved out"}, token=c.tokens["admin"])
    assert await asyncio.to_thread(call, code, resident) == 404  # no longer their community


@pytest.mark.asyncio
async def test_a_changed_community_or_gate_is_seen_at_the_next_request_in_another_process(
        app, api_client, other_process):
    """Accounts, communities and gates are copied in each process (every `/api/me` and
    access-log page reads them); their manager's change is on the other's next answer."""
    c = await make_community(app, "kd")
    await some_traffic(app, api_client, c)
    admin = c.tokens["admin"]
    me, page = f"{other_process}/api/me", f"{other_process}/api/communities/{c.id}/access-log"
    for _ in range(2):  # the second from the copies
        assert [x["name"] for x in (await asyncio.to_thread(answer, me, admin))["communities"]] \
            == ["Garden kd"]
        assert {x["gate_name"] for x in (await asyncio.to_thread(answer, page, admin))["items"]} \
            == {"main"}
    await app.places.update_community(c.id, {"name": "Renamed"})
    await app.places.update_gate(c.id, c.gates["main"], {"name": "南门"})
    assert [x["name"] for x in (await asyncio.to_thread(answer, me, admin))["communities"]] == [
        "Renamed"]
    assert {x["gate_name"] for x in (await asyncio.to_thread(answer, page, admin))["items"]} == {
        "南门"}


@pytest.mark.asyncio
async def test_a_document_read_while_its_change_was_announced_is_not_kept(app):
    cache = KeyCache(app.redis)
    await cache.start()
    reads = []

    async def load(keys):
        reads.append(keys)
        if len(reads) == 1:  # changed and announced while this read was in flight
            await announce(app.redis, "gates:1")
            await cache.mget("k")  # another request takes the announcement meanwhile
        return {"gates:1": {"name": f"read {len(reads)}"}}
    try:
        assert await cache.documents(["gates:1"], load) == {"gates:1": {"name": "read 1"}}
        assert await cache.documents(["gates:1"], load) == {"gates:1": {"name": "read 2"}}
        assert await cache.documents(["gates:1"], load) == {"gates:1": {"name": "read 2"}}
        assert len(reads) == 2
    finally:
        await cache.close()


@pytest.mark.asyncio
async def test_a_process_sees_its_own_change_before_its_announcement_comes_back(app):
    """Redis may flush the writer's acknowledgement before the subscribers' messages, so the
    writing process's own announcement can reach it after its next request has begun. Here
    the subscription's socket is not read until the end (the announcement waits in the
    kernel): the writer's own copies must be gone all the same."""
    c = await make_community(app, "own")
    cache = KeyCache(app.redis, clock=lambda: 0.0)  # never stale meanwhile
    await cache.start()
    places = PlaceManager(app.db, app.clock, cache)
    transport = cache.pubsub.connection._writer.transport
    try:
        assert (await places.gate(c.id, c.gates["main"]))["name"] == "main"  # copied
        assert await cache.mget("k") == [None]
        transport.pause_reading()
        await places.update_gate(c.id, c.gates["main"], {"name": "南门"})
        await set_announced(app.redis, "k", "v", ex=60, here=cache)
        assert (await places.gate(c.id, c.gates["main"]))["name"] == "南门"
        assert await cache.mget("k") == ["v"]
    finally:
        transport.resume_reading()
        await cache.close()


@pytest.mark.asyncio
async def test_an_unannounced_document_copy_is_read_again_only_after_minutes(app):
    """Copies live for minutes (a page of a community of thousands of gates names any of
    them: copies of a minute were mostly gone before their next use), and not for ever."""
    now = [0.0]
    cache = KeyCache(app.redis, clock=lambda: now[0])
    await cache.start()
    reads = []

    async def load(keys):
        reads.append(now[0])
        return {"gates:1": {"name": "main"}}
    try:
        for at in (0.0, 300.0, DOCUMENT_SECONDS + 1):
            now[0] = at
            cache.last_heard = at  # the subscription stays live meanwhile
            await cache.documents(["gates:1"], load)
        assert reads == [0.0, DOCUMENT_SECONDS + 1]
    finally:
        await cache.close()


@pytest.mark.asyncio
async def test_copies_are_used_only_while_the_subscription_is_live(app):
    cache = KeyCache(app.redis)
    await cache.start()
    try:
        await cache.mget("k")
        await cache.mget("k")
        assert (cache.hits, cache.misses) == (1, 1)
        await set_announced(app.redis, "k", "v", ex=60, here=cache)
        assert await cache.mget("k") == ["v"]

        # The subscription breaks (as when Redis restarts): copies are dropped, reads go to
        # Redis until the client has subscribed again.
        await cache.pubsub.connection.disconnect()
        await app.redis.set("k", "unannounced")
        assert await cache.mget("k") == ["unannounced"]
    finally:
        await cache.close()


async def answered(cache: KeyCache) -> None:
    """Until the subscription's socket has brought something (the last ping's answer)."""
    async with asyncio.timeout(30):
        while not await cache.pubsub.connection.can_read():
            await asyncio.sleep(0)  # (the event loop reads the socket meanwhile)


@pytest.mark.asyncio
async def test_an_idle_process_answers_its_next_request_from_its_copies(app):
    """The keeper pings, not the requests: a process that served nothing for longer than
    STALE_SECONDS still holds a live subscription at its next request (requests pinged it
    before, so the first after a pause found it silent and dropped every copy)."""
    now = [0.0]
    cache = KeyCache(app.redis, clock=lambda: now[0])
    await cache.start()
    try:
        await cache.mget("k")
        for beat in range(1, 6):  # idle for 10 s: only the keeper's beats
            now[0] = beat * PING_SECONDS
            await cache.tend()
            await answered(cache)
        now[0] += PING_SECONDS
        assert now[0] > STALE_SECONDS  # (twice over)
        assert await cache.mget("k") == [None]
        assert (cache.hits, cache.misses) == (1, 1)
    finally:
        await cache.close()


@pytest.mark.asyncio
async def test_a_silent_subscription_is_given_up_after_the_stale_bound(app):
    now = [0.0]
    cache = KeyCache(app.redis, clock=lambda: now[0])
    await cache.start()
    try:
        await cache.mget("k")
        cache.pubsub.connection._writer.transport.pause_reading()  # no answer is ever read
        for beat in range(1, 4):
            now[0] = beat * PING_SECONDS
            await cache.tend()
        assert cache.pubsub is not None  # 6 s without an answer: not yet past the bound
        now[0] = 4 * PING_SECONDS
        await cache.tend()
        assert cache.pubsub is None and not cache.copies
        assert await cache.mget("k") == [None] and cache.misses == 2
        await cache.tend()  # the next beat subscribes again
        assert cache.pubsub is not None
    finally:
        await cache.close()


@pytest.mark.asyncio
async def test_a_second_start_up_keeps_the_one_subscription(app):
    """Start-up runs again to seal keys (tests/test_pass_keys.py): a second subscription
    replaced the first, whose connection stayed open until the garbage collector found it."""
    first = app.keys.pubsub
    await app.startup()
    assert app.keys.pubsub is first


@pytest.mark.asyncio
async def test_a_closed_cache_never_subscribes_again(app):
    """A read after close (a request finishing during shutdown) must not open a subscription
    that outlives the Redis pool: it would leak a connection."""
    now = [0.0]
    cache = KeyCache(app.redis, clock=lambda: now[0])
    await cache.start()
    await cache.close()
    now[0] += 60  # well past the retry interval
    assert await cache.mget("revoked:nobody") == [None]  # read from Redis itself
    assert cache.pubsub is None


@pytest.mark.asyncio
async def test_concurrent_requests_keep_the_copies(app):
    """Requests arriving together while an announcement waits must not read the subscription
    at the same time: redis-py refuses the second reader, and the cache took that for a broken
    subscription, so under load no copy was ever used."""
    cache = KeyCache(app.redis)
    await cache.start()
    try:
        await cache.mget("k")
        for round_ in range(3):
            await set_announced(app.redis, f"other{round_}", "x", ex=60)  # waiting to be read
            assert await asyncio.gather(*(cache.mget("k") for _ in range(20))) == [[None]] * 20
        assert cache.pubsub is not None and (cache.hits, cache.misses) == (60, 1)
        await set_announced(app.redis, "k", "changed", ex=60)
        assert await asyncio.gather(*(cache.mget("k") for _ in range(5))) == [["changed"]] * 5
    finally:
        await cache.close()
