"""SLA clocks and escalation, driven by a manual clock and `SlaWatcher.run_once(now)`."""

import asyncio
from datetime import timedelta

import pytest

from models.notifications import feed_channel
from models.sla import SlaWatcher
from tests.tickets_support import START, clock, settings, t, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio


async def escalations(t, tid):
    return [(e["clock"], e["level"]) for e in (await t.get("manager", tid)).body["escalations"]]


async def test_emergency_near_breach_at_80_percent_then_breach(app, t, world, clock):
    tid = (await t.report(category="gas_leak")).body["id"]  # emergency: on site within 5 min
    await t.through(tid, "assign")
    watcher = app.sla_watcher
    clock.advance(3 * 60 + 59)
    assert await watcher.run_once(clock.now()) == 0
    clock.advance(1)  # 4:00 = 80 % of 5 minutes
    assert await watcher.run_once(clock.now()) == 1
    ticket = (await t.get("manager", tid)).body
    assert ticket["flags"] == ["near_breach:on_site"]
    assert ticket["clocks"]["on_site"]["near_breach"] is True
    assert ticket["escalations"][0]["notified"] == sorted([world.c.staff["manager"],
                                                           world.c.staff["maintenance"]])
    assert await watcher.run_once(clock.now()) == 0  # told once
    clock.advance(60)
    assert await watcher.run_once(clock.now()) == 1
    assert await escalations(t, tid) == [("on_site", "near_breach"), ("on_site", "breach")]
    ticket = (await t.get("manager", tid)).body
    assert ticket["clocks"]["on_site"]["result"] == "missed"
    # Arriving late does not turn a breach into a success.
    await t.through(tid, "accept", "check_in")
    assert (await t.get("manager", tid)).body["clocks"]["on_site"]["result"] == "missed"
    flagged = await t.http.get(f"{t.base}?flagged=true", token=world.tokens["customer_service"])
    assert [x["id"] for x in flagged.body] == [tid]

    # The feed carries the escalations, addressed to the manager and the assignee.
    events = await app.notifier.feed_since(world.c.id, "0-0")
    sla_events = [e for e in events if e["type"].startswith("sla.")]
    assert [e["type"] for e in sla_events] == ["sla.near_breach", "sla.breach"]
    assert sla_events[0]["to"] == ticket["escalations"][0]["notified"]


async def test_clocks_pause_while_the_resident_must_answer(app, t, clock):
    tid = (await t.report()).body["id"]  # quick repair: 60 minutes
    await t.through(tid, "assign", "accept")
    clock.advance(10 * 60)
    reply = await t.act("maintenance", tid, "ask", reason="when are you home?")
    assert reply.body["state"] == "waiting_resident"
    assert reply.body["clocks"]["on_site"]["paused"] is True
    clock.advance(5 * 3600)
    assert await app.sla_watcher.run_once(clock.now()) == 0
    reply = await t.act("ann", tid, "answer", reason="after 6 pm")
    assert reply.body["state"] == "accepted"  # back where the question was asked
    # 50 minutes of budget remain after the 5-hour pause: due 06:00 + 50 min.
    assert reply.body["clocks"]["on_site"]["due"] == "2026-11-02T07:00:00+00:00"
    clock.advance(47 * 60)  # past 80 % (48 of 60 minutes used)
    assert await app.sla_watcher.run_once(clock.now()) == 1
    assert await escalations(t, tid) == [("on_site", "near_breach")]
    messages = (await t.http.get("/api/me/messages", token=t.w.tokens["ann"])).body
    assert messages[0]["text"].endswith("when are you home?")


async def test_complaint_first_response_within_24_hours(app, t, clock):
    ok = (await t.report(kind="complaint", category="noise", area="other", place_path=None)).body
    late = (await t.report(kind="complaint", category="hygiene", area="other", place_path=None)).body
    assert ok["clocks"]["response"]["due"] == "2026-11-03T01:00:00+00:00"
    clock.advance(3600)
    reply = await t.act("customer_service", ok["id"], "assign",
                        assignee_id=t.w.c.staff["customer_service"])
    assert reply.body["clocks"]["response"]["result"] == "met"
    clock.advance(23 * 3600)
    await t.w.renew(app)
    assert await app.sla_watcher.run_once(clock.now()) == 1  # only the unanswered one breaches
    assert await escalations(t, late["id"]) == [("response", "breach")]
    assert await escalations(t, ok["id"]) == []


async def test_every_resolved_ticket_is_followed_up_within_48_hours(app, t, clock):
    tid = (await t.report()).body["id"]
    await t.through(tid, "assign", "accept", "check_in", "resolve")
    ticket = (await t.get("manager", tid)).body
    assert ticket["clocks"]["followup"]["due"] == "2026-11-04T01:00:00+00:00"
    clock.advance(48 * 3600)
    await t.w.renew(app)
    assert await app.sla_watcher.run_once(clock.now()) == 1
    assert await escalations(t, tid) == [("followup", "breach")]
    await t.through(tid, "follow_up")
    assert (await t.get("manager", tid)).body["clocks"]["followup"]["result"] == "missed"


async def test_normal_repair_is_due_at_the_agreed_time(app, t, clock):
    start, end = START + timedelta(days=1), START + timedelta(days=1, hours=2)
    ticket = (await t.report(category="lights", preferred_start=start.isoformat(),
                             preferred_end=end.isoformat())).body
    assert ticket["priority"] == "normal"
    assert ticket["clocks"]["on_site"]["due"] == "2026-11-03T03:00:00+00:00"
    # Dispatch agrees another window: the clock follows it.
    reply = await t.act("customer_service", ticket["id"], "assign",
                        assignee_id=t.w.c.staff["maintenance"],
                        appointment_start=(start + timedelta(hours=8)).isoformat(),
                        appointment_end=(end + timedelta(hours=8)).isoformat())
    assert reply.body["clocks"]["on_site"]["due"] == "2026-11-03T11:00:00+00:00"
    bad = await t.report(category="lights", preferred_start=end.isoformat(),
                         preferred_end=start.isoformat())
    assert bad.status == 400 and "preferred_end" in bad.error["fields"]


async def test_targets_per_community(t, world):
    path = f"/api/communities/{world.c.id}/sla-targets"
    assert (await t.http.get(path, token=world.tokens["maintenance"])).body["urgent_minutes"] == 15
    reply = await t.http.put(path, {"urgent_minutes": 30}, token=world.tokens["manager"])
    assert reply.status == 200 and reply.body["urgent_minutes"] == 30
    assert (await t.http.put(path, {"urgent_minutes": 30},
                             token=world.tokens["customer_service"])).status == 403
    assert (await t.http.put(path, {"urgent_minutes": 0}, token=world.tokens["manager"])).status == 400
    ticket = (await t.report(category="water_leak")).body
    assert ticket["clocks"]["on_site"]["due"] == "2026-11-02T01:30:00+00:00"


async def test_a_fresh_watcher_finds_due_clocks_in_the_database(app, t, clock):
    """Due times live in MongoDB: a restarted process (a new watcher) escalates them."""
    tid = (await t.report(category="gas_leak")).body["id"]
    clock.advance(600)
    restarted = SlaWatcher(app.db, app.redis, clock, app.tickets)
    assert await restarted.run_once(clock.now()) == 1
    assert await escalations(t, tid) == [("on_site", "breach")]


async def test_one_watcher_leads_at_a_time(app):
    first = SlaWatcher(app.db, app.redis, app.clock, app.tickets)
    second = SlaWatcher(app.db, app.redis, app.clock, app.tickets)
    assert await first.lead() is True
    assert await second.lead() is False
    assert await first.lead() is True  # renewing keeps it
    assert 0 < await app.redis.pttl(SlaWatcher.LOCK_KEY) <= SlaWatcher.LOCK_SECONDS * 1000
    await first.stop()  # stepping down releases the lock at once
    assert await second.lead() is True
    await second.stop()


async def test_lapsed_leader_is_replaced(app):
    first = SlaWatcher(app.db, app.redis, app.clock, app.tickets)
    second = SlaWatcher(app.db, app.redis, app.clock, app.tickets)
    assert await first.lead() is True
    await app.redis.delete(SlaWatcher.LOCK_KEY)  # what expiry does when a leader dies
    assert await second.lead() is True
    assert await first.lead() is False
    await second.stop()


async def test_the_background_task_escalates_on_its_own(app, t, world, clock):
    tid = (await t.report(category="gas_leak")).body["id"]
    clock.advance(600)
    seen = asyncio.Event()

    def on_event(channel, data):
        if '"sla.breach"' in data:
            seen.set()

    await app.feed_hub.join(feed_channel(world.c.id), on_event)
    app.sla_watcher.start()
    await asyncio.wait_for(seen.wait(), 30)
    await app.sla_watcher.stop()
    assert await escalations(t, tid) == [("on_site", "breach")]
