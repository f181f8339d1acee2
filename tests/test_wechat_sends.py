"""A WeChat subscribe message and its record are one step (models/notifications.py): the
attempt is recorded before WeChat is asked and the outcome after, under the outbox effect's
key, so a retried effect never sends twice. Sends are counted by the fake WeChat server
(scripts/fake_wechat.py) that received them."""

import json
import uuid
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from bson import ObjectId

from models.common import ManualClock
from models.outbox import backoff
from tests.tickets_support import make_world, settings, t  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clock():
    # Near the real time: the store's TTL index reads the outbox's done_at by its own clock.
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest_asyncio.fixture
async def world(app):
    return await make_world(app, tag=f"-{uuid.uuid4().hex[:6]}")  # an openid of this test's own


class Granted:
    """Ann's ticket, with subscribe credits she granted, here and at the fake WeChat."""

    def __init__(self, app, t, world, http_client, settings):
        self.app, self.t, self.world = app, t, world
        self.http, self.settings = http_client, settings
        self.template = settings.wechat_ticket_template

    async def ticket(self, credits: int) -> str:
        tid = (await self.t.report()).body["id"]
        for _ in range(credits):
            await self.t.http.post("/api/me/subscriptions",
                                   {"ticket_id": tid, "results": {self.template: "accept"}},
                                   token=self.world.tokens["ann"])
        resident = await self.app.db.residents.find_one({"_id": ObjectId(self.world.ann)})
        await self.http.fetch(f"{self.settings.wechat_base_url}/_fake/credits", method="POST",
                              body=json.dumps({"openid": resident["openid"],
                                               "template_id": self.template, "count": credits}))
        return tid

    async def sent(self, tid: str) -> int:
        reply = await self.http.fetch(f"{self.settings.wechat_base_url}/_fake/stats")
        return sum(m["page"].endswith(f"id={tid}") for m in json.loads(reply.body)["sent"])

    async def told(self) -> dict:
        """The ticket's tell effect (the only one: one step was taken)."""
        return await self.app.db.outbox.find_one({"kind": "ticket.tell_resident"})

    async def messages(self) -> list:
        return (await self.t.http.get("/api/me/messages", token=self.world.tokens["ann"])).body

    async def credits(self, tid: str) -> int:
        doc = await self.app.db.subscribe_credits.find_one(
            {"_id": f"{self.world.ann}:{self.template}:{tid}"})
        return doc["count"]


@pytest.fixture
def ann(app, t, world, http_client, settings):
    return Granted(app, t, world, http_client, settings)


async def test_a_retry_of_a_sent_message_sends_nothing(app, ann):
    tid = await ann.ticket(credits=2)  # a second send could go through: it must not
    await ann.t.through(tid, "assign")
    effect = await ann.told()
    assert effect["state"] == "done" and await ann.sent(tid) == 1
    await app.tickets._tell_resident(effect["_id"], effect["payload"])  # the effect, run again
    assert await ann.sent(tid) == 1
    assert [(m["kind"], m["wechat"]) for m in await ann.messages()] == [("已派单", "sent")]
    assert await ann.credits(tid) == 1


async def test_dying_between_the_send_and_its_record_never_sends_again(app, ann, clock,
                                                                       monkeypatch):
    tid = await ann.ticket(credits=2)
    send = app.notifier.wechat.send_subscribe_message

    async def dies_after_sending(*args, **kwargs):
        await send(*args, **kwargs)  # WeChat takes it...
        raise ConnectionError("...and the process dies before it records the send")
    monkeypatch.setattr(app.notifier.wechat, "send_subscribe_message", dies_after_sending)
    await ann.t.through(tid, "assign")
    monkeypatch.undo()
    effect = await ann.told()
    assert effect["state"] == "pending" and await ann.sent(tid) == 1  # WeChat has it

    clock.advance(backoff(1))
    assert await app.outbox.drain() == 1  # the outbox's retry
    assert await ann.sent(tid) == 1  # at most once: not sent again
    assert [(m["kind"], m["wechat"]) for m in await ann.messages()] == [("已派单", "unknown")]
    assert (await app.db.wechat_sends.find_one({"_id": effect["_id"]}))["state"] == "unknown"
    assert await ann.credits(tid) == 1  # the one spent on the send WeChat took


async def test_dying_before_the_send_began_sends_on_the_retry(app, ann, clock, monkeypatch):
    tid = await ann.ticket(credits=1)

    async def dies(*args):
        raise ConnectionError("the process died before it began the send")
    monkeypatch.setattr(app.notifier, "send_subscribe", dies)  # the in-app message is written
    await ann.t.through(tid, "assign")
    monkeypatch.undo()
    assert (await ann.told())["state"] == "pending" and await ann.sent(tid) == 0

    clock.advance(backoff(1))
    assert await app.outbox.drain() == 1
    assert await ann.sent(tid) == 1
    assert [(m["kind"], m["wechat"]) for m in await ann.messages()] == [("已派单", "sent")]


async def test_a_send_whose_outcome_is_unknown_is_not_repeated(app, ann, clock, monkeypatch):
    # At most once: the process died while WeChat was asked, so nobody knows whether it
    # arrived (here it did not) — it is not sent again, and says "unknown".
    tid = await ann.ticket(credits=1)

    async def dies(*args, **kwargs):
        raise ConnectionError("the process died while WeChat was asked")
    monkeypatch.setattr(app.notifier.wechat, "send_subscribe_message", dies)
    await ann.t.through(tid, "assign")
    monkeypatch.undo()
    clock.advance(backoff(1))
    assert await app.outbox.drain() == 1
    assert await ann.sent(tid) == 0
    assert [(m["kind"], m["wechat"]) for m in await ann.messages()] == [("已派单", "unknown")]
