"""Fixtures: real stores over sockets, a real HTTP server, and pytest-tornado's familiar names.

MongoDB: the embedded wire server (memory engine), or a real MongoDB when
MONGODB_URI is set. Redis: an embedded redis-server, or REDIS_URL (it is
flushed between tests, so point it at a database of its own). WeChat: the fake
server from scripts/fake_wechat.py, as its own process on loopback.
"""

import contextlib
import io
import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pymongo.errors
import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.httpserver
import tornado.netutil

from gate_bridge import logs
from server.app import XiaoquApp
from scripts.fake_wechat import start_fake_wechat
from server.embedded import RestartableMongo, start_mongo, start_redis
from server.settings import load_settings
from server.stores import connect_mongo, connect_redis

pytest_plugins = ("tests.browser",)  # the `admin` browser fixture, for the admin-view tests


@pytest.fixture(scope="session")
def mongo_url():
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    with start_mongo(None) as mongo:
        yield mongo.url


@pytest.fixture(scope="session")
def redis_url():
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with start_redis(None) as redis:
        yield redis.url


@pytest.fixture
def redis_dir(tmp_path):
    return tmp_path / "redis"


@pytest.fixture
def own_redis(redis_dir):
    """A redis-server of the test's own, for tests that stop and restart it (they override
    `redis_url` with its url)."""
    with start_redis(redis_dir) as redis:
        yield redis


@pytest.fixture
def restartable_redis():
    """A Redis without persistence, restarted on its port by `restart()` with nothing in it:
    what a Redis that keeps no data does after a crash or a reboot."""
    stack = contextlib.ExitStack()
    service = stack.enter_context(start_redis(None))
    port = int(service.url.rsplit(":", 1)[1].split("/")[0])

    class Handle:
        url = service.url

        @staticmethod
        def stop():
            stack.close()

        @staticmethod
        def start():
            stack.enter_context(start_redis(None, port=port))

        @classmethod
        def restart(cls):
            cls.stop()
            cls.start()

        @classmethod
        def restart_after_rebuild(cls, seeded):
            """Restart again just after the next rebuild of a `Seeded` fast path
            (models/seeding.py), before the read that needed it: Redis forgets it twice."""
            seed = seeded.seed

            async def seeded_then_lost():
                await seed()
                seeded.seed = seed  # once
                cls.restart()
            seeded.seed = seeded_then_lost
    yield Handle
    stack.close()


@pytest.fixture
def mongo_store(tmp_path):
    """A MongoDB-protocol server of the test's own, for tests that kill and restart it (on
    the same port and data); they override `mongo_url` with its url."""
    store = RestartableMongo(tmp_path / "mongo.sqlite3")
    store.start()
    yield store
    store.close()


@pytest.fixture(scope="session")
def wechat_url():
    with start_fake_wechat() as wechat:
        yield wechat.url


class Logged:
    """Every log line of this process, as the server writes them (LOG_FORMAT=json)."""

    def __init__(self, stream: io.StringIO):
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self, **match) -> list[dict]:
        """The lines (parsed) whose fields include `match`."""
        parsed = [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]
        return [line for line in parsed if all(line.get(k) == v for k, v in match.items())]


@pytest.fixture
def logged():
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    logs.configure("json", logging.DEBUG, stream)
    yield Logged(stream)
    for handler in [h for h in root.handlers if h.get_name() == logs.HANDLER]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def settings(tmp_path, mongo_url, redis_url, wechat_url):
    return load_settings(
        mongodb_uri=mongo_url, mongodb_db=f"test_{uuid.uuid4().hex[:12]}", redis_url=redis_url,
        data_dir=tmp_path, wechat_base_url=wechat_url, wechat_appid="wx-test-appid",
        login_max_failures=3)


@pytest.fixture
def clock():
    """The app's clock; tests replace it with a ManualClock when they move time."""
    return None


@pytest.fixture
def mongo_listeners():
    """pymongo monitoring listeners for the app's client (tests/test_store_budget.py counts)."""
    return ()


@pytest_asyncio.fixture
async def app(settings, clock, mongo_listeners):
    redis = connect_redis(settings.redis_url)
    await redis.flushdb()
    mongo = connect_mongo(settings.mongodb_uri, mongo_listeners)
    application = XiaoquApp(settings, mongo, redis, clock=clock)
    await application.startup()
    yield application
    try:
        await mongo.drop_database(settings.mongodb_db)
    except pymongo.errors.ConnectionFailure:
        pass  # the test stopped the server on purpose
    finally:
        await application.close()


@pytest_asyncio.fixture
async def http_server(app):
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    server.port = sock.getsockname()[1]
    yield server
    server.stop()
    await server.close_all_connections()


@pytest.fixture
def base_url(http_server):
    return f"http://127.0.0.1:{http_server.port}"


@pytest_asyncio.fixture
async def http_client():
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    yield client
    client.close()


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def error(self) -> dict:
        return self.body["error"]


class ApiClient:
    """Talks JSON to the running server, as the mini-program and admin view do."""

    def __init__(self, http_client, base_url):
        self.http = http_client
        self.base_url = base_url

    async def call(self, method: str, path: str, json_body: Any = None, token: str | None = None,
                   raw: bytes | None = None, headers: dict | None = None) -> Reply:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = raw if raw is not None else (json.dumps(json_body) if json_body is not None else None)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        response = await self.http.fetch(self.base_url + path, method=method, body=body,
                                         headers=headers, raise_error=False,
                                         allow_nonstandard_methods=True)
        text = response.body.decode() if response.body else ""
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return Reply(response.code, json.loads(text) if is_json and text else text,
                     response.headers)

    async def get(self, path, **kw):
        return await self.call("GET", path, **kw)

    async def post(self, path, json_body=None, **kw):
        return await self.call("POST", path, json_body, **kw)

    async def put(self, path, json_body=None, **kw):
        return await self.call("PUT", path, json_body, **kw)

    async def patch(self, path, json_body=None, **kw):
        return await self.call("PATCH", path, json_body, **kw)

    async def delete(self, path, **kw):
        return await self.call("DELETE", path, **kw)


@pytest.fixture
def api_client(http_client, base_url):
    return ApiClient(http_client, base_url)
