"""Late and missed rounds raised once on the feed and listed for the guard console and Today;
the on-time rate and open findings on the KPI page, beside their targets."""

import pytest
import pytest_asyncio

from tests.patrol_support import START, clock, p  # noqa: F401 (fixtures)
from tests.tickets_support import settings  # noqa: F401 (tokens outliving the clock's moves)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def late_plan(p):
    """The route again, every 2 hours in a 60-minute window, late if not started by 15 min."""
    return await p.add_plan(START, name="准点巡更", late_after_minutes=15)


async def feed(app, p, kind):
    return [e["round"] for e in await app.notifier.feed_since(p.c.id, "0-0") if e["type"] == kind]


async def alarms(p, who="security"):
    reply = await p.http.get(f"{p.base}/patrol-alarms", token=p.c.tokens[who])
    assert reply.status == 200, reply.body
    return reply.body


async def walk(p, plan, *codes):
    for code in codes:
        assert (await p.check_in(plan, code)).status == 201


async def test_a_round_not_started_in_time_is_raised_late_once(app, p, late_plan, clock):
    clock.advance(14 * 60)
    await app.patrols.sweep(clock.now())
    assert await feed(app, p, "patrol.late") == []  # 00:14: not late yet
    clock.advance(60)
    await app.patrols.sweep(clock.now())  # 00:15: nobody has started the round
    await app.patrols.sweep(clock.now())
    [late] = await feed(app, p, "patrol.late")
    assert (late["plan_id"], late["done"], late["of"]) == (late_plan, 0, 3)
    [alarm] = await alarms(p)
    assert (alarm["kind"], alarm["plan_name"], alarm["state"], alarm["plan_id"]) == \
        ("late", "准点巡更", "open", late_plan)

    await walk(p, late_plan, "A1", "A2", "A3")  # walked late: still listed, as completed
    [alarm] = await alarms(p)
    assert (alarm["kind"], alarm["state"]) == ("late", "completed")
    clock.advance(60 * 60)
    stats = (await p.http.get(f"{p.base}/patrol-plans/{late_plan}/stats?days=1",
                              token=p.c.tokens["manager"])).body
    assert (stats["completed"], stats["on_time"], stats["on_time_rate"]) == (1, 0, 0.0)


async def test_a_round_started_in_time_is_not_late_and_counts_on_time(app, p, late_plan, clock):
    clock.advance(10 * 60)
    await walk(p, late_plan, "A1")
    clock.advance(30 * 60)
    await app.patrols.sweep(clock.now())
    await walk(p, late_plan, "A2", "A3")
    assert await feed(app, p, "patrol.late") == []
    assert await alarms(p) == []  # the plan without late_after is not late either
    clock.advance(30 * 60)
    assert await app.patrols.sweep(clock.now()) == 1  # the other plan's round was missed
    [missed] = await alarms(p)
    assert (missed["kind"], missed["plan_id"]) == ("missed", p.plan)
    assert (await alarms(p, "maintenance"))[0]["kind"] == "missed"  # all staff see alarms
    stats = (await p.http.get(f"{p.base}/patrol-plans/{late_plan}/stats?days=1",
                              token=p.c.tokens["manager"])).body
    assert (stats["completed"], stats["on_time"], stats["on_time_rate"]) == (1, 1, 1.0)


async def test_a_round_the_sweeper_found_closed_is_missed_not_late(app, p, late_plan, clock):
    clock.advance(3 * 60 * 60)  # 03:00: the sweeper was down through two rounds of each plan
    assert await app.patrols.sweep(clock.now()) == 4
    assert await feed(app, p, "patrol.late") == []
    old = {a["round_id"] for a in await alarms(p)}
    assert len(old) == 4
    clock.advance(26 * 60 * 60)  # a day on: those alarms have left the list (24 hours)
    await app.patrols.sweep(clock.now())
    p.c.tokens["security"] = (await app.auth.start_session(p.c.staff["security"], "staff"))["access_token"]
    shown = await alarms(p)
    assert shown and not old & {a["round_id"] for a in shown}
    assert {a["kind"] for a in shown} == {"missed"}


async def test_late_after_must_fall_inside_the_window(p):
    route_id = (await p.http.get(f"{p.base}/patrol-routes", token=p.c.tokens["manager"])).body[0]["id"]
    wide = await p.post("manager", "/patrol-plans", {
        "route_id": route_id, "name": "x", "starts_at": START.isoformat(), "every_minutes": 120,
        "window_minutes": 60, "late_after_minutes": 60, "role": "security"})
    assert wide.status == 400 and wide.error["fields"] == {"late_after_minutes": "须小于时段分钟数（60）"}


async def test_kpi_on_time_rate_and_open_findings_beside_their_targets(app, p, late_plan, clock):
    clock.advance(5 * 60)
    await walk(p, late_plan, "A1")
    reply = await p.check_in(late_plan, "A2", answers={"lights": "problem"}, note="灯坏")
    round_id = reply.body["id"]
    await walk(p, late_plan, "A3")
    # the other plan's round: walked with a problem at A1, its ticket made
    reply = await p.check_in(p.plan, "A1", answers={"locks": "problem"})
    other = reply.body["id"]
    ticket = (await p.post("security", f"/patrol-rounds/{other}/visits/0/ticket", {})).body
    clock.advance(60 * 60)
    await app.patrols.sweep(clock.now())

    async def kpi():
        reply = await p.http.get(f"{p.base}/kpi?period=day&day={START.date().isoformat()}",
                                 token=p.c.tokens["manager"])
        assert reply.status == 200, reply.body
        return reply.body

    body = await kpi()
    assert (body["patrol_completion"]["value"], body["patrol_completion"]["rounds"]) == (0.5, 2)
    on_time = body["patrol_on_time"]
    assert (on_time["value"], on_time["target"], on_time["comparison"], on_time["meets"]) == \
        (0.5, 1.0, ">=", False)
    findings = body["patrol_open_findings"]
    assert (findings["value"], findings["target"], findings["found"], findings["ticketed"],
            findings["meets"]) == (2, 0, 2, 1, False)

    assert (await p.post("security", f"/patrol-rounds/{round_id}/visits/1/ticket", {})).status == 201
    cs, worker = p.c.tokens["customer_service"], p.c.tokens["maintenance"]
    for token, action, fields in (
            (cs, "assign", {"assignee_id": p.c.staff["maintenance"]}), (worker, "accept", {}),
            (worker, "check_in", {}), (worker, "resolve", {"notes": "修好"}),
            (cs, "follow_up", {"notes": "复查"}), (cs, "close", {})):
        reply = await p.http.post(f"{p.base}/tickets/{ticket['id']}/transitions",
                                  {"action": action, **fields}, token=token)
        assert reply.status == 200, reply.body
    findings = (await kpi())["patrol_open_findings"]
    assert (findings["value"], findings["ticketed"], findings["closed"]) == (1, 2, 1)

    # The office decides the lamp needs no repair: a cancelled ticket ends its finding too
    # (asked again, the finding's ticket is the same cancelled one: nothing else could end it).
    lamp = (await p.post("security", f"/patrol-rounds/{round_id}/visits/1/ticket", {})).body
    reply = await p.http.post(f"{p.base}/tickets/{lamp['id']}/transitions", {"action": "cancel"},
                              token=cs)
    assert reply.status == 200, reply.body
    findings = (await kpi())["patrol_open_findings"]
    assert (findings["value"], findings["closed"], findings["cancelled"], findings["meets"]) == \
        (0, 1, 1, True)
