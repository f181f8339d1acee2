"""A backing store that stops answering: /readyz says which, API calls get a JSON 503.

Each test gets stores of its own and really stops one of them.
"""

import pytest

from server.embedded import start_mongo, start_redis
from tests.builders import make_community

pytestmark = pytest.mark.asyncio


@pytest.fixture
def own_redis():
    with start_redis(None) as redis:
        yield redis


@pytest.fixture
def own_mongodb():
    with start_mongo(None) as mongo:
        yield mongo


@pytest.fixture
def redis_url(own_redis):
    return own_redis.url


@pytest.fixture
def mongo_url(own_mongodb):
    return own_mongodb.url


def stop(service) -> None:
    service.process.terminate()
    service.process.wait(10)


@pytest.mark.parametrize("down, up", [("redis", "mongodb"), ("mongodb", "redis")])
async def test_a_store_down(app, api_client, request, down, up):
    token = (await make_community(app, "x")).tokens["admin"]
    stop(request.getfixturevalue(f"own_{down}"))

    ready = await api_client.get("/readyz")
    assert ready.status == 503
    assert ready.body[up] == "ok" and ready.body[down].startswith("down")

    reply = await api_client.get("/api/communities", token=token)
    assert reply.status == 503
    assert reply.error["code"] == "store_unavailable" and reply.error["store"] == down
    assert "Traceback" not in str(reply.body)
