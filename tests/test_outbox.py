"""The outbox (models/outbox.py): effects stored once per key, run until they happen, retried
with backoff, kept through a store outage and run once it is back — never lost, never doubled."""

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from models.common import ManualClock
from models.outbox import FIRST_BACKOFF, MAX_BACKOFF, backoff
from tests.waiting import until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clock():
    # Near the real time: the store's TTL index reads done_at against its own clock.
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


class Recorder:
    """A handler that records each run and fails while told to."""

    def __init__(self, failures: int = 0):
        self.runs: list[tuple[str, dict]] = []
        self.failures = failures

    async def __call__(self, key: str, payload: dict) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the effect's service is down")
        self.runs.append((key, payload))


async def test_an_effect_runs_once_per_key(app):
    done = Recorder()
    app.outbox.handle("test.effect", done)
    assert await app.outbox.add("k1", "test.effect", {"n": 1})
    await app.outbox.settled()
    assert await app.outbox.add("k1", "test.effect", {"n": 1})  # a repeated request
    await app.outbox.settled()
    assert await app.outbox.drain() == 0  # nothing left for the worker
    assert done.runs == [("k1", {"n": 1})]
    assert (await app.db.outbox.find_one({"_id": "k1"}))["state"] == "done"
    assert await app.outbox.pending() == 0


async def test_a_failing_effect_is_retried_with_backoff_until_it_happens(app, clock):
    done = Recorder(failures=2)
    app.outbox.handle("test.effect", done)
    await app.outbox.add("k1", "test.effect", {})
    await app.outbox.settled()
    doc = await app.db.outbox.find_one({"_id": "k1"})
    assert (doc["state"], doc["attempts"]) == ("pending", 1)
    assert doc["last_error"] == "RuntimeError: the effect's service is down"
    assert await app.outbox.drain() == 0  # not due yet: it waits out its backoff
    clock.advance(backoff(1))
    assert await app.outbox.drain() == 0  # failed again: the wait doubles
    assert (await app.db.outbox.find_one({"_id": "k1"}))["due"] == clock.now() + timedelta(
        seconds=backoff(2))
    clock.advance(backoff(2))
    assert await app.outbox.drain() == 1
    assert done.runs == [("k1", {})] and backoff(2) == 2 * FIRST_BACKOFF


async def test_the_worker_runs_what_was_left(app):
    done = Recorder()
    app.outbox.handle("test.effect", done)
    await app.outbox.add("k1", "test.effect", {}, run=False)
    assert done.runs == []
    app.outbox_worker.start()
    try:
        async with asyncio.timeout(10):
            while not done.runs:
                await asyncio.sleep(0.05)
    finally:
        await app.outbox_worker.stop()
    assert done.runs == [("k1", {})]


class TestStoreDownAfterTheChange:
    """The change saved, then the store dies before its effect is stored: `add` does not fail
    the change, keeps the effect, and it runs once the store is back — once."""

    @pytest.fixture
    def mongo_url(self, mongo_store):
        return mongo_store.url

    async def test_an_effect_kept_through_an_outage_runs_once_after_it(self, app, mongo_store):
        done = Recorder()
        app.outbox.handle("test.effect", done)
        mongo_store.kill()
        assert await app.outbox.add("k1", "test.effect", {"n": 1}) is False  # kept, not raised
        assert [doc["_id"] for doc in app.outbox.unsaved] == ["k1"]
        mongo_store.start()  # same port, same data
        await until(lambda: not app.outbox.unsaved, 30)
        await app.outbox.settled()
        assert done.runs == [("k1", {"n": 1})]
        assert await app.outbox.drain() == 0 and await app.outbox.pending() == 0


async def test_a_stuck_effect_shows_on_metrics_until_it_runs(app, api_client, clock):
    async def gauges() -> dict[str, float]:
        text = (await api_client.get("/metrics")).body
        return {name: float(value) for name, value in re.findall(
            r'^(xiaoqu_outbox_\w+)\{kind="test\.stuck"\} (\S+)$', text, re.M)}
    done = Recorder(failures=3)
    app.outbox.handle("test.stuck", done)
    assert await gauges() == {"xiaoqu_outbox_pending": 0, "xiaoqu_outbox_oldest_pending_seconds": 0}
    await app.outbox.add("k1", "test.stuck", {})
    await app.outbox.add("k2", "test.stuck", {}, run=False, due=clock.now() + timedelta(hours=1))
    await app.outbox.settled()  # k1 failed once
    clock.advance(600)
    assert await app.outbox.drain() == 0  # and again
    clock.advance(400)
    assert await gauges() == {"xiaoqu_outbox_pending": 2,
                              "xiaoqu_outbox_oldest_pending_seconds": 1000}
    done.failures = 0
    clock.advance(MAX_BACKOFF)
    assert await app.outbox.drain() == 1  # k1 ran; k2 is not due yet
    assert await gauges() == {"xiaoqu_outbox_pending": 1,
                              "xiaoqu_outbox_oldest_pending_seconds": 1000 + MAX_BACKOFF}
