"""The staff live feed over a real WebSocket, across two server processes' worth of apps."""

import asyncio
import json

import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
from tornado.websocket import websocket_connect

from models.common import ManualClock
from server.app import XiaoquApp
from server.embedded import start_redis
from server.stores import connect_mongo, connect_redis
from tests.tickets_support import START, make_world, t, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio
TIMEOUT = 30  # seconds: the deadline of a wait for an event, only a hung test meets it


class Feed:
    def __init__(self, base_url, community_id):
        self.url = base_url.replace("http://", "ws://") + f"/api/communities/{community_id}/feed"
        self.sockets = []

    async def open(self, token=None, ready=True, **params):
        query = "&".join(f"{k}={v}" for k, v in {"token": token, **params}.items() if v)
        ws = await websocket_connect(f"{self.url}?{query}")
        self.sockets.append(ws)
        if ready:
            assert (await self.next(ws))["type"] == "feed.ready"
        return ws

    @staticmethod
    async def next(ws):
        message = await asyncio.wait_for(ws.read_message(), TIMEOUT)
        return message and json.loads(message)

    def close(self):
        for ws in self.sockets:
            ws.close()


@pytest.fixture
def feed(base_url, world):
    f = Feed(base_url, world.c.id)
    yield f
    f.close()


async def test_new_tickets_assignments_and_urges_arrive_live(t, world, feed):
    ws = await feed.open(world.tokens["customer_service"])
    tid = (await t.report()).body["id"]
    created = await feed.next(ws)
    assert (created["type"], created["ticket"]["id"], created["ticket"]["priority"]) == \
        ("ticket.created", tid, "quick")
    await t.through(tid, "assign")
    assigned = await feed.next(ws)
    assert (assigned["type"], assigned["ticket"]["assignee_id"]) == \
        ("ticket.assign", world.c.staff["maintenance"])
    await t.http.post(f"{t.base}/{tid}/urge", token=world.tokens["ann"])
    urged = await feed.next(ws)
    assert (urged["type"], urged["urge_count"]) == ("ticket.urged", 1)


async def test_reconnect_resumes_after_the_last_seen_id(t, world, feed):
    ws = await feed.open(world.tokens["customer_service"], device="phone")
    await t.report()
    seen = await feed.next(ws)
    ws.close()
    missed = [(await t.report()).body["id"], (await t.report()).body["id"]]
    again = await feed.open(world.tokens["customer_service"], ready=False, device="phone",
                            last_id=seen["id"])
    backlog = [await feed.next(again), await feed.next(again)]
    assert [e["ticket"]["id"] for e in backlog] == missed
    ready = await feed.next(again)
    assert ready == {"type": "feed.ready", "last_id": backlog[-1]["id"]}
    live = (await t.report()).body["id"]
    assert (await feed.next(again))["ticket"]["id"] == live


async def test_token_can_come_as_the_first_message(t, world, feed):
    ws = await feed.open(ready=False)
    await ws.write_message(json.dumps({"token": world.tokens["maintenance"]}))
    assert (await feed.next(ws))["type"] == "feed.ready"
    await t.report()
    assert (await feed.next(ws))["type"] == "ticket.created"
    bad = await feed.open(ready=False)
    await bad.write_message(json.dumps({"token": "nonsense"}))
    assert await feed.next(bad) is None and bad.close_code == 4401


async def test_only_staff_of_the_community_connect(app, world, feed, base_url):
    for token, status in (("nonsense", 401), (world.tokens["ann"], 403)):
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await feed.open(token)
        assert refused.value.code == status
    other = await make_world(app, "other")
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await Feed(base_url, other.c.id).open(world.tokens["manager"])
    assert refused.value.code == 404


async def test_a_second_connection_from_a_device_replaces_the_first(world, feed):
    first = await feed.open(world.tokens["security"], device="tablet")
    other_device = await feed.open(world.tokens["security"], device="desk")
    await feed.open(world.tokens["security"], device="tablet")
    assert await feed.next(first) is None
    assert first.close_code == 4000
    assert other_device.protocol is not None  # untouched


async def test_escalations_reach_only_those_they_are_addressed_to(app, t, world, feed):
    manager = await feed.open(world.tokens["manager"])
    bystander = await feed.open(world.tokens["security"])
    tid = (await t.report(category="gas_leak")).body["id"]
    assert (await feed.next(manager))["type"] == "ticket.created"
    assert (await feed.next(bystander))["type"] == "ticket.created"
    doc = await app.db.tickets.find_one({})
    await app.tickets.escalate(doc, doc["clocks"]["on_site"]["due"])
    breach = await feed.next(manager)
    assert (breach["type"], breach["ticket"]["id"], breach["to"]) == \
        ("sla.breach", tid, [world.c.staff["manager"]])
    await t.report()  # the bystander's next event is this one: the breach was not theirs
    assert (await feed.next(bystander))["type"] == "ticket.created"


@pytest_asyncio.fixture
async def second_process(settings):
    """Another app on the same stores, as a second server process would be."""
    other = XiaoquApp(settings, connect_mongo(settings.mongodb_uri), connect_redis(settings.redis_url))
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(other)
    server.add_sockets([sock])
    yield other, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.stop()
    await server.close_all_connections()
    await other.close()


async def test_events_cross_processes(t, world, feed, second_process):
    other, other_url = second_process
    here = await feed.open(world.tokens["customer_service"])
    there_feed = Feed(other_url, world.c.id)
    there = await there_feed.open(world.tokens["manager"])
    tid = (await t.report()).body["id"]  # through the first process
    assert (await feed.next(there))["ticket"]["id"] == tid
    assert (await feed.next(here))["ticket"]["id"] == tid
    # And the other way round.
    doc = await other.tickets.create(world.resident("bob"), world.c.id, kind="repair",
                                     category="lights", description="hall light", area="stairwell",
                                     place_path="1-1")
    assert (await feed.next(here))["ticket"]["id"] == str(doc["_id"])
    there_feed.close()


class TestRedisRestart:
    """Redis goes away under a live feed: clients are told, resume by last_id, miss nothing."""

    @pytest.fixture
    def redis_url(self, own_redis):
        return own_redis.url

    async def test_feed_closes_on_redis_loss_and_resumes_after_restart(
            self, t, world, feed, own_redis, redis_dir):
        ws = await feed.open(world.tokens["customer_service"])
        await t.report()
        seen = (await feed.next(ws))["id"]

        own_redis.process.terminate()
        own_redis.process.wait(10)
        assert await asyncio.wait_for(ws.read_message(), TIMEOUT) is None
        assert ws.close_code == 1012

        port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])
        with start_redis(redis_dir, port=port):  # same data (append-only file), same port
            reply = await t.report()
            assert reply.status == 201, reply.body
            tid = reply.body["id"]  # published while nobody listens live
            again = await feed.open(world.tokens["customer_service"], ready=False, last_id=seen)
            missed = await feed.next(again)
            assert (missed["type"], missed["ticket"]["id"]) == ("ticket.created", tid)
            assert (await feed.next(again))["type"] == "feed.ready"
            await t.http.post(f"{t.base}/{tid}/urge", token=world.tokens["ann"])
            assert (await feed.next(again))["type"] == "ticket.urged"  # live again


class TestTokenExpiry:
    @pytest.fixture
    def clock(self):
        return ManualClock(START)

    async def test_socket_closes_when_its_token_expires(self, app, world, feed, clock):
        # Move the app clock to a moment before the token's end; real time does the rest.
        clock.advance(app.config.access_token_seconds - 0.3)
        ws = await feed.open(world.tokens["customer_service"])
        assert await asyncio.wait_for(ws.read_message(), TIMEOUT) is None
        assert ws.close_code == 4401 and "expired" in ws.close_reason
