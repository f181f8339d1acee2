"""A backing store that stops answering: /readyz says which, API calls get a JSON 503 — and,
once the store is known down, at once (the circuit breaker, server/stores.py), until it is
back by itself.

Each test gets stores of its own and really stops one of them.
"""

import contextlib
import json

import pytest

from server.embedded import start_redis
from server.stores import FAIL_FAST_SECONDS
from tests.builders import make_community
from tests.waiting import until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis_url(own_redis):  # conftest's stores of the test's own
    return own_redis.url


@pytest.fixture
def mongo_url(mongo_store):
    return mongo_store.url


def stop(down: str, own_redis, mongo_store) -> None:
    if down == "mongodb":
        mongo_store.kill()
    else:
        own_redis.process.terminate()
        own_redis.process.wait(10)


@pytest.mark.parametrize("down, up", [("redis", "mongodb"), ("mongodb", "redis")])
async def test_a_store_down(app, api_client, own_redis, mongo_store, down, up):
    token = (await make_community(app, "x")).tokens["admin"]
    stop(down, own_redis, mongo_store)

    ready = await api_client.get("/readyz")
    assert ready.status == 503
    assert ready.body[up] == "ok" and ready.body[down].startswith("down")

    reply = await api_client.get("/api/communities", token=token)
    assert reply.status == 503
    assert reply.error["code"] == "store_unavailable" and reply.error["store"] == down
    assert "Traceback" not in str(reply.body)


class TestFailFast:
    """A store stopped: the first calls fail as slowly as the driver does, then every call
    answers 503 within FAIL_FAST_SECONDS; the store restarted, calls succeed again."""

    @pytest.mark.parametrize("down", ["mongodb", "redis"])
    async def test_known_down_answers_at_once_and_clears_by_itself(
            self, app, base_url, http_client, mongo_store, own_redis, redis_dir, down):
        c = await make_community(app, "ff")

        async def call(path: str, method: str = "GET", timeout: float = 60.0):
            return await http_client.fetch(
                base_url + path, method=method, raise_error=False, request_timeout=timeout,
                headers={"Authorization": f"Bearer {c.tokens['admin']}"},
                body='{"reason": "test", "wait": 1}' if method == "POST" else None)

        gates = f"/api/communities/{c.id}/gates"
        opening = f"/api/communities/{c.id}/gates/{c.gates['main']}/open"
        assert (await call(gates)).code == 200
        with contextlib.ExitStack() as restarted:
            stop(down, own_redis, mongo_store)
            assert (await call(gates)).code == 503  # as slow as the driver's timeouts
            await until(lambda: app.stores.down() == down, 20)
            # Known down: the client gives up after the bound, so a slower answer fails here.
            for path, method in [(gates, "GET"), (opening, "POST")] * 3:
                reply = await call(path, method, timeout=FAIL_FAST_SECONDS)
                assert reply.code == 503, (path, reply.code, reply.error)
                error = json.loads(reply.body)["error"]
                assert (error["code"], error["store"]) == ("store_unavailable", down)
            ready = await call("/readyz")
            assert ready.code == 503 and json.loads(ready.body)[down].startswith("down")

            if down == "mongodb":
                mongo_store.start()  # same port, same data
            else:
                port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])
                restarted.enter_context(start_redis(redis_dir, port))
            await until(lambda: app.stores.down() is None, 20)
            assert (await call(gates)).code == 200
