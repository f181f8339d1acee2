"""What follows a saved change goes through the outbox: a store outage never turns a saved
ticket action into a failed request, and the effect is delivered once when the store returns."""

from datetime import UTC, datetime

import pytest

from models.common import ManualClock
from models.workflow import Pending
from server.embedded import start_redis
from tests.tickets_support import settings, t, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis_url(own_redis):
    return own_redis.url


@pytest.fixture
def clock():
    # Today: the outbox keeps done effects (to recognise a repeat) for days of the store's
    # own time, so a clock weeks in the past would see them expire at once.
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


async def feed_types(app, community_id):
    return [e["type"] for e in await app.notifier.feed_since(community_id, "0-0")]


async def test_redis_down_during_a_ticket_action_answers_success_and_delivers_later_once(
        app, t, world, own_redis, redis_dir, clock):
    tid = (await t.report()).body["id"]
    assert await feed_types(app, world.c.id) == ["ticket.created"]
    # Redis stops in the middle of the action: after the caller was authenticated (that
    # needs Redis) and the assignee checked, before the change is saved.
    check = app.staff.active_member

    async def check_then_stop_redis(*args):
        member = await check(*args)
        own_redis.process.terminate()
        own_redis.process.wait(10)
        return member

    app.staff.active_member = check_then_stop_redis
    reply = await t.act("customer_service", tid, "assign", assignee_id=world.c.staff["maintenance"])
    assert reply.status == 200, reply.body  # saved: a success, though the feed is down
    assert reply.body["state"] == "assigned"
    assert (await app.db.tickets.find_one({}))["state"] == "assigned"
    # The resident's message needs only MongoDB: delivered at once. The feed event waits.
    assert [m["kind"] async for m in app.db.messages.find({})] == ["已派单"]
    waiting = await app.db.outbox.find({"state": "pending"}).to_list(None)
    assert [d["kind"] for d in waiting] == ["ticket.feed"]

    port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])
    with start_redis(redis_dir, port=port):  # same data, same port
        clock.advance(3600)  # past any backoff
        assert await app.outbox.drain() == 1
        assert await app.outbox.drain() == 0  # done: never again
        assert await feed_types(app, world.c.id) == ["ticket.created", "ticket.assign"]
        # A repeat of the same effect (a second worker, a retried request) changes nothing.
        await app.effects.emit([Pending(waiting[0]["_id"], "ticket.feed", waiting[0]["payload"])])
        assert await feed_types(app, world.c.id) == ["ticket.created", "ticket.assign"]
        assert [m["kind"] async for m in app.db.messages.find({})] == ["已派单"]
