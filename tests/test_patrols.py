"""Patrols over HTTP with the injectable clock: order and timing windows, who may check in, a
scan that is not from now, missed rounds raised on the feed, the plan's figures."""

from datetime import timedelta

import pytest

from tests.patrol_support import START, clock, p  # noqa: F401 (fixtures)
from tests.tickets_support import settings  # noqa: F401 (tokens outliving the clock's moves)

pytestmark = pytest.mark.asyncio


async def test_a_round_is_walked_in_order_within_its_window(app, p, clock):
    first = await p.check_in(p.plan, "A1", location={"latitude": 31.2, "longitude": 121.5})
    assert first.status == 201, first.body
    assert (first.body["state"], len(first.body["visits"])) == ("open", 1)
    visit = first.body["visits"][0]
    assert (visit["by"], visit["device"], visit["location"]["latitude"]) == \
        (p.c.staff["security"], "security-phone", 31.2)
    skipped = await p.check_in(p.plan, "A3")
    assert skipped.status == 409 and skipped.error["code"] == "wrong_order"
    again = await p.check_in(p.plan, "A1")
    assert again.status == 409 and again.error["code"] == "wrong_order"
    clock.advance(20 * 60)
    assert (await p.check_in(p.plan, "A2", answers={"lights": "problem"}, note="灯坏")).status == 201
    last = await p.check_in(p.plan, "A3", answers={"lights": "ok", "locks": "ok"})
    assert last.body["state"] == "completed" and last.body["completed_at"]
    assert (await p.check_in(p.plan, "A1")).error["code"] == "wrong_order"  # round done

    clock.advance(50 * 60)  # 01:10: between rounds
    late = await p.check_in(p.plan, "A1")
    assert late.status == 409 and late.error["code"] == "outside_window"


async def test_a_stale_or_foreign_scan_is_refused(p, clock):
    stale = await p.check_in(p.plan, "A1", scanned_at=(clock.now() - timedelta(minutes=10)).isoformat())
    assert stale.status == 400 and "scanned_at" in stale.error["fields"]
    assert (await p.check_in(p.plan, "ZZ")).error["fields"] == {"code": "未知的巡更点编号"}  # Chinese unless asked
    assert (await p.check_in(p.plan, "A1", who="maintenance")).status == 403  # plan is the guards'
    assert (await p.check_in(p.plan, "A1", who="customer_service")).status == 403
    bad = await p.check_in(p.plan, "A1", answers={"paint": "ok"})
    assert bad.status == 400 and "answers" in bad.error["fields"]
    assert (await p.post("security", "/patrol-checkpoints",
                         {"code": "B1", "name": "x"})).status == 403  # guards do not set up


async def test_a_missed_round_is_raised_on_the_feed_and_counted(app, p, clock):
    assert (await p.check_in(p.plan, "A1")).status == 201
    clock.advance(60 * 60)  # 01:00: the first round's window closed at two of three
    assert await app.patrols.sweep(clock.now()) == 1
    clock.advance(90 * 60)  # 02:30: the round of 02:00 is open, nobody walked it yet
    assert await app.patrols.sweep(clock.now()) == 0
    clock.advance(30 * 60)  # 03:00: its window closed, that one is missed too
    assert await app.patrols.sweep(clock.now()) == 1
    assert await app.patrols.sweep(clock.now()) == 0  # told once
    events = [e for e in await app.notifier.feed_since(p.c.id, "0-0") if e["type"] == "patrol.missed"]
    assert [(e["round"]["done"], e["round"]["of"]) for e in events] == [(1, 3), (0, 3)]
    assert events[0]["permission"] == "patrols.read"
    rounds = (await p.http.get(f"{p.base}/patrol-plans/{p.plan}/rounds",
                               token=p.c.tokens["manager"])).body
    assert [r["state"] for r in rounds] == ["missed", "missed"]
    stats = (await p.http.get(f"{p.base}/patrol-plans/{p.plan}/stats?days=1",
                              token=p.c.tokens["manager"])).body
    assert (stats["rounds"], stats["completed"], stats["missed"], stats["completion_rate"]) == \
        (2, 0, 2, 0.0)
    kpi = (await p.http.get(f"{p.base}/kpi?period=day&day={START.date().isoformat()}",
                            token=p.c.tokens["manager"])).body["patrol_completion"]
    assert (kpi["rounds"], kpi["completed"], kpi["value"], kpi["meets"]) == (2, 0, 0.0, False)


async def test_plans_check_their_route_and_assignee(p):
    bad = await p.post("manager", "/patrol-routes", {"name": "x", "checkpoints": ["0" * 24]})
    assert bad.status == 400 and bad.error["fields"] == {"checkpoints": "巡更点未知或重复"}
    plans = (await p.http.get(f"{p.base}/patrol-plans", token=p.c.tokens["security"])).body
    route_id = plans[0]["route_id"]
    wide = await p.post("manager", "/patrol-plans", {
        "route_id": route_id, "name": "x", "starts_at": START.isoformat(), "every_minutes": 60,
        "window_minutes": 90, "role": "security"})
    assert wide.status == 400 and "window_minutes" in wide.error["fields"]
    nobody = await p.post("manager", "/patrol-plans", {
        "route_id": route_id, "name": "x", "starts_at": START.isoformat(), "every_minutes": 60,
        "window_minutes": 30})
    assert nobody.status == 400 and "role" in nobody.error["fields"]
    taken = await p.post("manager", "/patrol-checkpoints", {"code": "A1", "name": "again"})
    assert taken.status == 400 and taken.error["fields"] == {"code": "已是巡更点"}


async def test_unit_doors_stairwells_and_windows_every_three_days(p, clock):
    """The plans' "unit doors, stairwells and shared windows inspected every 3 days, with
    records" is a patrol plan: a route of those checkpoints, every 4320 minutes, walked within
    a day (docs/patrols.md has the same example)."""
    ids = []
    for code, name in (("U1", "1单元门"), ("S1", "1单元楼梯间"), ("W1", "1单元公共窗")):
        reply = await p.post("security_lead", "/patrol-checkpoints", {
            "code": code, "name": name, "place_path": "1-1", "checklist": ["intact", "clean"]})
        ids.append(reply.body["id"])
    route = await p.post("manager", "/patrol-routes", {"name": "楼道巡查", "checkpoints": ids})
    plan = (await p.post("manager", "/patrol-plans", {
        "route_id": route.body["id"], "name": "每 3 天", "starts_at": START.isoformat(),
        "every_minutes": 3 * 24 * 60, "window_minutes": 24 * 60, "role": "maintenance"})).body
    async def later(seconds):  # and fresh tokens: these outlive a day at most
        clock.advance(seconds)
        for who in ("maintenance", "manager"):
            p.c.tokens[who] = (await p.app.auth.start_session(p.c.staff[who], "staff"))["access_token"]

    await later(9 * 3600)  # day 1, 09:00: the round is open all day
    for code in ("U1", "S1", "W1"):
        done = await p.check_in(plan["id"], code, who="maintenance", answers={"intact": "ok"})
        assert done.status == 201, done.body
    assert done.body["state"] == "completed"
    await later(24 * 3600)  # day 2: between rounds
    assert (await p.check_in(plan["id"], "U1", who="maintenance")).error["code"] == "outside_window"
    await later(2 * 24 * 3600)  # day 4: the next round, walked at one door only
    assert (await p.check_in(plan["id"], "U1", who="maintenance")).status == 201
    await later(24 * 3600)
    await p.app.patrols.sweep(clock.now())
    rounds = (await p.http.get(f"{p.base}/patrol-plans/{plan['id']}/rounds",
                               token=p.c.tokens["manager"])).body
    assert [(r["starts_at"][:10], r["state"], len(r["visits"])) for r in rounds] == [
        ((START + timedelta(days=3)).date().isoformat(), "missed", 1),
        (START.date().isoformat(), "completed", 3)]


async def test_the_open_round_the_routes_and_the_tag_sheet(app, p, clock):
    async def get(path, who="security"):
        return await p.http.get(p.base + path, token=p.c.tokens[who])

    shown = (await get(f"/patrol-plans/{p.plan}/round")).body  # nobody started it: not saved
    assert (shown["state"], shown["visits"], len(shown["checkpoints"])) == ("open", [], 3)
    assert await app.db.patrol_rounds.count_documents({}) == 0
    assert (await p.check_in(p.plan, "A1")).status == 201
    assert len((await get(f"/patrol-plans/{p.plan}/round")).body["visits"]) == 1
    clock.advance(70 * 60)  # 01:10: between windows
    assert (await get(f"/patrol-plans/{p.plan}/round")).body is None

    [route] = (await get("/patrol-routes")).body
    assert (route["name"], len(route["checkpoints"])) == ("夜间巡更", 3)
    assert (await p.post("security_lead", "/patrol-checkpoints",
                         {"code": "b-1", "name": "后门"})).status == 201  # lower case: a byte-mode QR
    assert (await get("/patrol-checkpoints/sheet")).status == 403  # guards do not print tags
    tags = (await get("/patrol-checkpoints/sheet", "security_lead")).body
    assert [(t["code"], t["payload"]) for t in tags] == [
        ("A1", "XQCP:A1"), ("A2", "XQCP:A2"), ("A3", "XQCP:A3"), ("b-1", "XQCP:b-1")]
    assert all(t["qr"].startswith("data:image/svg+xml;base64,") for t in tags)
