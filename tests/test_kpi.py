"""KPIs from known histories: exact figures, periods on the community's clock (China's by
default, a zone with daylight saving too), targets alongside."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from models.kpi import percentile, window
from tests.builders import make_resident
from tests.tickets_support import START, clock, make_world, repair, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio


class History:
    """Acts through the managers at the manual clock's times."""

    def __init__(self, app, world, clock):
        self.app, self.w, self.clock = app, world, clock
        self.tickets = app.tickets

    async def report(self, **fields) -> str:
        doc = await self.tickets.create(self.w.resident("ann"), self.w.c.id, **repair(**fields))
        return str(doc["_id"])

    async def act(self, tid, action, after_minutes=0, who=None, **fields):
        self.clock.advance(after_minutes * 60)
        role = who or {"assign": "customer_service", "follow_up": "customer_service",
                       "close": "customer_service", "confirm": "ann", "reopen": "ann",
                       "cancel": "ann"}.get(action, "maintenance")
        principal = self.w.resident(role) if role in ("ann", "bob") else self.w.staff(role)
        if action == "assign":
            fields.setdefault("assignee_id", self.w.c.staff["maintenance"])
        await self.tickets.transition(principal, self.w.c.id, tid, action, **fields)

    async def repaired(self, tid, respond, arrive, rating=None, followed=True):
        await self.act(tid, "assign", respond)
        await self.act(tid, "accept")
        await self.act(tid, "check_in", arrive - respond)
        await self.act(tid, "resolve", 30, notes="done")
        if rating:
            await self.act(tid, "confirm", 60, rating=rating)
        if followed:
            await self.act(tid, "follow_up", 60, notes="called")
            await self.act(tid, "close")


async def seed(app, world, clock) -> None:
    h = History(app, world, clock)
    # 1: urgent, first response 2 min, on site in 10 (met), rated 5, followed up, closed.
    t1 = await h.report(category="water_leak")
    await h.repaired(t1, respond=2, arrive=10, rating=5)
    # 2: quick, response 10, on site after 90 min (missed), rated 3, not followed up.
    t2 = await h.report(category="drain")
    await h.repaired(t2, respond=10, arrive=90, rating=3, followed=False)
    # 3: normal, response 30, reworked once, rated 4 in the end, closed.
    t3 = await h.report(category="lights")
    await h.act(t3, "assign", 30)
    await h.act(t3, "accept")
    await h.act(t3, "check_in", 60)
    await h.act(t3, "resolve", 30, notes="new bulb")
    await h.act(t3, "reopen", 60, reason="flickers again")
    await h.act(t3, "accept")
    await h.act(t3, "check_in", 30)
    await h.act(t3, "resolve", 30, notes="new ballast")
    await h.act(t3, "confirm", 10, rating=4)
    await h.act(t3, "follow_up", 60, notes="called")
    await h.act(t3, "close")
    # 4: complaint, first response after 60 min, resolved without rating, followed up, closed.
    t4 = await h.report(kind="complaint", category="noise", area="other", place_path=None)
    await h.act(t4, "assign", 60, assignee_id=world.c.staff["customer_service"])
    await h.act(t4, "accept", who="customer_service")
    await h.act(t4, "resolve", 5, who="customer_service", notes="spoke to the neighbour")
    await h.act(t4, "follow_up", 60, notes="quiet now")
    await h.act(t4, "close")
    # 5: cancelled before anyone responded.
    t5 = await h.report()
    await h.act(t5, "cancel", 5)
    # 6: a complaint still open, urged twice.
    t6 = await h.report(kind="complaint", category="hygiene", area="stairwell", place_path="1-1")
    principal = world.resident("ann")
    await app.tickets.urge(principal, world.c.id, t6)
    clock.advance(300)
    await app.tickets.urge(principal, world.c.id, t6)
    # Not counted: next month (Dec 1, 00:30 China time), and another community.
    clock.current = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    await h.report()
    other = await make_world(app, "other")
    await app.tickets.create(other.resident("ann"), other.c.id, **repair())
    await world.renew(app)  # the clock moved a month


async def test_month_figures_are_exact(app, api_client, world, clock):
    await seed(app, world, clock)
    reply = await api_client.get(f"/api/communities/{world.c.id}/kpi?period=month&day=2026-11-15",
                                 token=world.tokens["manager"])
    assert reply.status == 200, reply.body
    k = reply.body
    assert (k["start"], k["end"]) == ("2026-10-31T16:00:00+00:00", "2026-11-30T16:00:00+00:00")
    assert k["tickets"] == 6
    assert k["by_kind"] == {"repair": 4, "complaint": 2}
    assert k["by_state"] == {"closed": 3, "confirmed": 1, "cancelled": 1, "submitted": 1}
    assert k["by_priority"] == {"urgent": 1, "quick": 2, "normal": 1, "complaint": 2}
    assert k["on_site_timeliness"] == {
        "urgent": {"value": 1.0, "target": 1.0, "comparison": ">=", "meets": True, "met": 1,
                   "decided": 1},
        "quick": {"value": 0.0, "target": 1.0, "comparison": ">=", "meets": False, "met": 0,
                  "decided": 1},
        "normal": {"value": 1.0, "target": 1.0, "comparison": ">=", "meets": True, "met": 1,
                   "decided": 1},
    }
    assert k["first_response_minutes"] == {"count": 4, "p50": 10.0, "p90": 60.0}
    assert k["followup_rate"] == {"value": 0.75, "target": 1.0, "comparison": ">=", "meets": False}
    assert k["satisfaction_rate"] == {"value": 0.6667, "target": 0.9, "comparison": ">=",
                                      "meets": False}
    assert k["rework_rate"] == {"value": 0.25, "target": 0.02, "comparison": "<=", "meets": False}
    assert k["closed_loop_rate"]["value"] == 0.6
    assert k["urges"] == {"total": 2, "tickets": 1}
    assert k["counts"]["breached"] == 0  # the watcher never ran here; timeliness comes from clocks


async def test_day_and_week_periods(app, api_client, world, clock):
    await seed(app, world, clock)
    base = f"/api/communities/{world.c.id}/kpi"
    token = world.tokens["manager"]
    day = (await api_client.get(f"{base}?period=day&day=2026-11-02", token=token)).body
    assert day["tickets"] == 6
    assert (await api_client.get(f"{base}?period=day&day=2026-11-03", token=token)).body["tickets"] == 0
    week = (await api_client.get(f"{base}?period=week&day=2026-11-30", token=token)).body
    assert (week["start"], week["tickets"]) == ("2026-11-29T16:00:00+00:00", 1)  # Monday Nov 30
    empty = (await api_client.get(f"{base}?period=month&day=2026-09-01", token=token)).body
    assert empty["tickets"] == 0 and empty["satisfaction_rate"]["value"] is None
    assert empty["first_response_minutes"] == {"count": 0, "p50": None, "p90": None}


async def test_who_may_read_kpis(api_client, world):
    base = f"/api/communities/{world.c.id}/kpi"
    assert (await api_client.get(base, token=world.tokens["maintenance"])).status == 403
    assert (await api_client.get(base, token=world.tokens["ann"])).status == 403
    assert (await api_client.get(base, token=world.tokens["customer_service"])).status == 200
    bad = await api_client.get(f"{base}?period=year", token=world.tokens["manager"])
    assert bad.status == 400 and "period" in bad.error["fields"]


async def test_periods_and_percentiles():
    china, berlin = ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin")
    assert window("month", date(2026, 12, 31), china)[1] == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert window("week", date(2026, 11, 8), china)[0] == datetime(2026, 11, 1, 16, tzinfo=UTC)
    # The day the clocks go back lasts 25 hours; the month holding it starts in summer time.
    assert window("day", date(2026, 10, 25), berlin) == (
        datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 23, tzinfo=UTC))
    assert window("month", date(2026, 10, 9), berlin) == (
        datetime(2026, 9, 30, 22, tzinfo=UTC), datetime(2026, 10, 31, 23, tzinfo=UTC))
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9
    assert percentile([7], 0.5) == 7


async def test_demo_month_gives_meaningful_numbers(app, api_client, world, clock):
    from scripts.seed_tickets import TICKETS, seed_tickets
    for name, room in (("cat", "1-2-101"), ("dan", "1-1-101")):
        await make_resident(app, world.c, name, room, relation="owner" if name == "cat" else "family")
    assert await seed_tickets(app, world.c.id, START) == TICKETS
    assert await seed_tickets(app, world.c.id, START) == 0  # once only
    k = (await api_client.get(f"/api/communities/{world.c.id}/kpi?period=month&day=2026-10-20",
                              token=world.tokens["manager"])).body
    assert k["tickets"] > 30 and set(k["by_kind"]) == {"repair", "complaint"}
    assert 0.7 <= k["satisfaction_rate"]["value"] < 1
    assert 0.5 <= k["followup_rate"]["value"] < 1
    assert 0 < k["first_response_minutes"]["p50"] <= k["first_response_minutes"]["p90"] <= 30
    assert k["urges"]["total"] > 0 and len(k["on_site_timeliness"]) >= 3
    assert {"closed", "confirmed"} <= set(k["by_state"])


async def test_a_series_gives_each_period_oldest_first(app, api_client, world, clock):
    await seed(app, world, clock)
    base = f"/api/communities/{world.c.id}/kpi/series"
    token = world.tokens["manager"]
    months = (await api_client.get(f"{base}?period=month&day=2026-12-05&count=3", token=token)).body
    assert [(m["start"], m["tickets"]) for m in months] == [
        ("2026-09-30T16:00:00+00:00", 0), ("2026-10-31T16:00:00+00:00", 6),
        ("2026-11-30T16:00:00+00:00", 1)]
    month = (await api_client.get(f"/api/communities/{world.c.id}/kpi?period=month&day=2026-11-15",
                                  token=token)).body
    assert months[1] == month  # the same figures as the single report
    weeks = (await api_client.get(f"{base}?period=week&day=2026-11-30&count=5", token=token)).body
    assert [w["tickets"] for w in weeks] == [6, 0, 0, 0, 1]
    days = (await api_client.get(f"{base}?period=day&day=2026-11-03&count=2", token=token)).body
    assert [d["tickets"] for d in days] == [6, 0]
    too_many = await api_client.get(f"{base}?count=32", token=token)
    assert too_many.status == 400 and "count" in too_many.error["fields"]
    refused = await api_client.get(base, token=world.tokens["maintenance"])
    assert refused.status == 403


async def test_day_boundaries_follow_a_zone_with_daylight_saving(app, api_client, world, clock):
    # Berlin: clocks go back from 03:00 to 02:00 summer time on 2026-10-25 (01:00 UTC).
    await app.places.update_community(world.c.id, {"time_zone": "Europe/Berlin"})
    h = History(app, world, clock)
    reported = {  # UTC -> Berlin local day
        datetime(2026, 10, 24, 21, 59, tzinfo=UTC): "2026-10-24",  # 23:59 summer time
        datetime(2026, 10, 24, 22, 1, tzinfo=UTC): "2026-10-25",  # 00:01
        datetime(2026, 10, 25, 22, 30, tzinfo=UTC): "2026-10-25",  # 23:30 winter time
        datetime(2026, 10, 25, 23, 30, tzinfo=UTC): "2026-10-26",  # 00:30
    }
    for at in reported:
        clock.current = at
        await h.report()
    await world.renew(app)
    base = f"/api/communities/{world.c.id}/kpi/series?period=day&day=2026-10-26&count=3"
    days = (await api_client.get(base, token=world.tokens["manager"])).body
    assert [(d["start"], d["end"], d["tickets"]) for d in days] == [
        ("2026-10-23T22:00:00+00:00", "2026-10-24T22:00:00+00:00", 1),
        ("2026-10-24T22:00:00+00:00", "2026-10-25T23:00:00+00:00", 2),
        ("2026-10-25T23:00:00+00:00", "2026-10-26T23:00:00+00:00", 1)]
    # No day given: today on the community's clock (00:30 on the 26th there, still the 25th in UTC).
    today = (await api_client.get(f"/api/communities/{world.c.id}/kpi?period=day",
                                  token=world.tokens["manager"])).body
    assert (today["start"], today["tickets"]) == ("2026-10-25T23:00:00+00:00", 1)
