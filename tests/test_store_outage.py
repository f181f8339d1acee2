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
def own_mongo():
    with start_mongo(None) as mongo:
        yield mongo


@pytest.fixture
def redis_url(own_redis):
    return own_redis.url


@pytest.fixture
def mongo_url(own_mongo):
    return own_mongo.url


def stop(service) -> None:
    service.process.terminate()
    service.process.wait(10)


async def test_redis_down(app, api_client, own_redis):
    token = (await make_community(app, "x")).tokens["admin"]
    stop(own_redis)

    ready = await api_client.get("/readyz")
    assert ready.status == 503
    assert ready.body["mongodb"] == "ok" and ready.body["redis"].startswith("down")

    reply = await api_client.get("/api/communities", token=token)
    assert reply.status == 503
    assert reply.error["code"] == "store_unavailable" and reply.error["store"] == "redis"
    assert "Traceback" not in str(reply.body)


async def test_mongodb_down(app, api_client, own_mongo):
    token = (await make_community(app, "x")).tokens["admin"]
    stop(own_mongo)

    ready = await api_client.get("/readyz")
    assert ready.status == 503
    assert ready.body["redis"] == "ok" and ready.body["mongodb"].startswith("down")

    reply = await api_client.get("/api/communities", token=token)
    assert reply.status == 503 and reply.error["store"] == "mongodb"
