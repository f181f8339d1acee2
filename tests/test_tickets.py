"""Tickets over HTTP: the state machine, who may do what, urges, priorities, messages."""

import asyncio
from zoneinfo import ZoneInfo

import pytest

from models.access import STAFF_ROLES
from models.tickets import KINDS, WORKFLOW
from tests.tickets_support import clock, settings, t, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio


async def test_repair_goes_from_report_to_closed_with_a_record_of_every_step(t, world, clock):
    reply = await t.report()
    assert reply.status == 201, reply.body
    ticket = reply.body
    tid = ticket["id"]
    assert (ticket["state"], ticket["priority"], ticket["suggested_priority"], ticket["channel"]) == \
        ("submitted", "quick", "quick", "app")
    assert ticket["allowed_actions"] == ["cancel"]
    assert "escalations" not in ticket  # the office's business, not the resident's

    steps = [("assign", "customer_service"), ("accept", "maintenance"), ("check_in", "maintenance"),
             ("resolve", "maintenance"), ("confirm", "ann"), ("follow_up", "customer_service"),
             ("close", "customer_service")]
    for action, _ in steps:
        clock.advance(60)
        await t.through(tid, action)
    done = (await t.get("customer_service", tid)).body
    assert done["state"] == "closed"
    assert [(h["action"], h["to"]) for h in done["history"]] == [
        ("submit", "submitted"), ("assign", "assigned"), ("accept", "accepted"),
        ("check_in", "on_site"), ("resolve", "resolved"), ("confirm", "confirmed"),
        ("follow_up", "followed_up"), ("close", "closed")]
    assert [h["by"] for h in done["history"][1:]] == [world.c.staff[r] if r != "ann" else world.ann
                                                        for _, r in steps]
    assert done["history"][4]["reason"] == "new washer"
    assert done["history"][5]["rating"] == 5 and done["rating"] == 5
    assert done["clocks"]["on_site"]["result"] == "met"  # 3 minutes for a 60-minute promise
    assert done["clocks"]["followup"]["result"] == "met"
    assert done["allowed_actions"] == []

    # The resident was told at each step that concerns them, in the app.
    messages = await t.http.get("/api/me/messages", token=world.tokens["ann"])
    assert [m["kind"] for m in messages.body] == ["已办结", "待确认", "已到场", "已派单"]
    assert {m["wechat"] for m in messages.body} == {"no_credit"}


async def test_an_illegal_transition_is_409_listing_what_is_allowed(t):
    tid = (await t.report()).body["id"]
    reply = await t.act("ann", tid, "confirm", rating=5)
    assert reply.status == 409
    assert reply.error["code"] == "illegal_transition"
    assert reply.error["state"] == "submitted"
    assert reply.error["allowed"] == ["cancel"]
    reply = await t.act("customer_service", tid, "check_in")
    assert reply.status == 409 and reply.error["allowed"] == ["ask", "assign", "cancel"]
    assert (await t.get("ann", tid)).body["state"] == "submitted"


async def test_a_legal_action_by_the_wrong_person_is_403(t, world):
    tid = (await t.report()).body["id"]
    assert (await t.act("ann", tid, "assign", assignee_id=world.c.staff["maintenance"])).status == 403
    assert (await t.act("maintenance", tid, "assign",
                        assignee_id=world.c.staff["maintenance"])).status == 403
    await t.through(tid, "assign")
    # Only the assignee works the ticket, even a manager may not accept for them.
    assert (await t.act("security", tid, "accept")).status == 403
    assert (await t.act("manager", tid, "accept")).status == 403
    assert (await t.act("maintenance", tid, "accept")).status == 200


async def test_every_rule_names_known_states_and_roles():
    from models.tickets import STATES, PREVIOUS
    for rule in WORKFLOW.actions:
        assert all(rule.sources_for(kind) <= set(STATES) for kind in KINDS)
        assert any(rule.sources_for(kind) for kind in KINDS)
        assert rule.target in set(STATES) | {PREVIOUS}
        assert rule.actors <= {"resident", "assignee", "dispatcher", "followup"}


async def test_worker_returns_job_and_dispatcher_reassigns(t, world):
    tid = (await t.report()).body["id"]
    await t.through(tid, "assign")
    reply = await t.act("maintenance", tid, "return")
    assert reply.status == 400 and reply.error["fields"] == {"reason": "退回时必填"}
    reply = await t.act("maintenance", tid, "return", reason="needs an electrician")
    assert reply.body["state"] == "returned"
    assert reply.body["history"][-1]["reason"] == "needs an electrician"
    # Dispatch again, to security this time; then reassign back with a reason.
    reply = await t.act("customer_service", tid, "assign", assignee_id=world.c.staff["security"])
    assert reply.body["state"] == "assigned" and reply.body["assignee_id"] == world.c.staff["security"]
    reply = await t.act("customer_service", tid, "reassign", assignee_id=world.c.staff["maintenance"])
    assert reply.status == 400 and "reason" in reply.error["fields"]
    reply = await t.act("customer_service", tid, "reassign", reason="back from leave",
                        assignee_id=world.c.staff["maintenance"])
    assert reply.body["assignee_id"] == world.c.staff["maintenance"]
    bad = await t.act("customer_service", tid, "reassign", reason="x", assignee_id="0" * 24)
    assert bad.status == 400 and bad.error["fields"] == {"assignee_id": "本小区没有这位维修人员"}


async def test_resident_cancels_before_work_starts_but_not_after(t):
    early = (await t.report()).body["id"]
    await t.through(early, "assign", "accept")
    reply = await t.act("ann", early, "cancel", reason="fixed it myself")
    assert reply.body["state"] == "cancelled"
    assert reply.body["clocks"]["on_site"]["result"] is None  # not counted either way

    late = (await t.report()).body["id"]
    await t.through(late, "assign", "accept", "check_in")
    reply = await t.act("ann", late, "cancel")
    assert reply.status == 409 and reply.error["allowed"] == []


async def test_reopen_after_resolution_is_rework_with_a_new_on_site_clock(t, clock):
    tid = (await t.report()).body["id"]
    await t.through(tid, "assign", "accept", "check_in", "resolve")
    clock.advance(3600)
    assert (await t.act("ann", tid, "reopen")).status == 400  # a reason is required
    reply = await t.act("ann", tid, "reopen", reason="still dripping")
    ticket = reply.body
    assert (ticket["state"], ticket["rework_count"]) == ("assigned", 1)
    assert ticket["clocks"]["on_site"]["result"] is None
    # Restarted at the reopening (02:00) with the quick-repair budget of 60 minutes.
    assert ticket["clocks"]["on_site"]["due"] == "2026-11-02T03:00:00+00:00"
    assert "followup" not in ticket["clocks"]
    await t.through(tid, "accept", "check_in", "resolve", "confirm")
    assert (await t.get("ann", tid)).body["rating"] == 5


async def test_residents_see_only_their_own_tickets(t, world):
    ann_ticket = (await t.report()).body["id"]
    bob_ticket = (await t.report("bob", place_path="1-1-102")).body["id"]
    assert (await t.get("bob", ann_ticket)).status == 404
    assert (await t.act("bob", ann_ticket, "cancel")).status == 404
    mine = await t.http.get(t.base, token=world.tokens["bob"])
    assert [x["id"] for x in mine.body] == [bob_ticket]
    every = await t.http.get(t.base, token=world.tokens["security"])
    assert {x["id"] for x in every.body} == {ann_ticket, bob_ticket}
    # A resident cannot report for someone else's room.
    reply = await t.report("bob", place_path="1-1-101")
    assert reply.status == 400 and "place_path" in reply.error["fields"]


async def test_list_filters(t, world):
    first = (await t.report()).body["id"]
    second = (await t.report(category="gas_leak")).body["id"]
    await t.through(first, "assign")
    as_cs = world.tokens["customer_service"]
    assert [x["id"] for x in (await t.http.get(f"{t.base}?state=assigned", token=as_cs)).body] == [first]
    assert [x["id"] for x in (await t.http.get(f"{t.base}?priority=emergency", token=as_cs)).body] \
        == [second]
    mine = await t.http.get(f"{t.base}?assignee_id=me", token=world.tokens["maintenance"])
    assert [x["id"] for x in mine.body] == [first]
    assert (await t.http.get(f"{t.base}?state=lost", token=as_cs)).error["fields"].keys() == {"state"}


async def test_customer_service_files_a_phone_call_for_a_resident(t, world):
    reply = await t.report("customer_service", resident_id=world.ann, category="noise",
                           kind="complaint", area="other", place_path=None)
    assert reply.status == 201, reply.body
    ticket = reply.body
    assert (ticket["channel"], ticket["resident_id"], ticket["priority"]) == ("phone", world.ann,
                                                                               "complaint")
    assert ticket["clocks"]["response"]["result"] == "met"  # a person answered
    assert (await t.get("ann", ticket["id"])).status == 200
    missing = await t.report("customer_service", kind="complaint", category="noise", area="other",
                             place_path=None)
    assert missing.status == 400 and missing.error["fields"] == {"resident_id": "工作人员操作时必填"}
    assert (await t.report("maintenance", resident_id=world.ann)).status == 403


async def test_bad_reports_name_the_field_and_write_nothing(t, world, app):
    cases = [({"description": "x" * 501}, "description"), ({"category": "unicorn"}, "category"),
             ({"kind": "complaint"}, "category"), ({"area": "moon"}, "area"),
             ({"place_path": "9-9"}, "place_path"),
             ({"area": "stairwell", "place_path": "7"}, "place_path"),
             ({"priority": "emergency"}, None)]
    for fields, field in cases[:-1]:
        reply = await t.report(**fields)
        assert reply.status == 400, (fields, reply.body)
        assert field in reply.error["fields"], (fields, reply.body)
    assert await app.db.tickets.count_documents({}) == 0
    # A resident's priority wish is ignored: the category suggests it.
    assert (await t.report(priority="emergency")).body["priority"] == "quick"


async def test_gate_tickets_link_to_a_gate_of_the_community(t, world, app):
    reply = await t.report(category="gate", area="gate", place_path=None)
    assert reply.status == 400 and reply.error["fields"] == {"gate_id": "门禁类工单必填"}
    other = await app.places.create_community("Elsewhere", "else")
    foreign = await app.places.create_gate(str(other["_id"]), "g", "g", "pedestrian", [""])
    reply = await t.report(category="gate", area="gate", place_path=None, gate_id=str(foreign["_id"]))
    assert reply.status == 400 and reply.error["fields"] == {"gate_id": "未知的门"}
    reply = await t.report(category="gate", area="gate", place_path=None,
                           gate_id=world.c.gates["u1-1"])
    assert reply.status == 201 and reply.body["gate_id"] == world.c.gates["u1-1"]
    assert reply.body["priority"] == "urgent"


async def test_urge_at_most_every_five_minutes_and_only_while_open(t, world, clock):
    tid = (await t.report()).body["id"]
    urge = f"{t.base}/{tid}/urge"
    assert (await t.http.post(urge, token=world.tokens["ann"])).body["urge_count"] == 1
    clock.advance(200)
    again = await t.http.post(urge, token=world.tokens["ann"])
    assert again.status == 429 and again.headers["Retry-After"] == "101"
    clock.advance(100)
    assert (await t.http.post(urge, token=world.tokens["ann"])).body["urge_count"] == 2
    assert (await t.http.post(urge, token=world.tokens["customer_service"])).status == 403
    assert (await t.http.post(urge, token=world.tokens["bob"])).status == 404
    staff_view = (await t.get("customer_service", tid)).body
    assert [u["by"] for u in staff_view["urges"]] == [world.ann, world.ann]
    await t.through(tid, "assign", "accept", "check_in", "resolve")
    clock.advance(600)
    reply = await t.http.post(urge, token=world.tokens["ann"])
    assert reply.status == 409 and reply.error["code"] == "not_urgeable"


async def test_customer_service_changes_priority_and_the_clock_follows(t, world):
    ticket = (await t.report()).body
    tid = ticket["id"]
    path = f"{t.base}/{tid}/priority"
    reply = await t.http.put(path, {"priority": "emergency", "reason": "water on the floor"},
                             token=world.tokens["customer_service"])
    assert reply.status == 200, reply.body
    assert reply.body["priority"] == "emergency" and reply.body["suggested_priority"] == "quick"
    assert reply.body["clocks"]["on_site"]["due"] == "2026-11-02T01:05:00+00:00"
    assert reply.body["history"][-1]["priority_from"] == "quick"
    assert (await t.http.put(path, {"priority": "normal", "reason": "x"},
                             token=world.tokens["ann"])).status == 403
    bad = await t.http.put(path, {"priority": "complaint", "reason": "x"},
                           token=world.tokens["customer_service"])
    assert bad.status == 400 and "priority" in bad.error["fields"]


async def test_of_two_racing_accepts_one_wins(t):
    tid = (await t.report()).body["id"]
    await t.through(tid, "assign")
    replies = await asyncio.gather(t.act("maintenance", tid, "accept"),
                                   t.act("maintenance", tid, "accept"))
    assert sorted(r.status for r in replies) == [200, 409]
    history = (await t.get("maintenance", tid)).body["history"]
    assert [h["action"] for h in history].count("accept") == 1


async def test_complaint_has_no_on_site_step(t):
    tid = (await t.report(kind="complaint", category="hygiene", area="stairwell",
                          place_path="1-1")).body["id"]
    await t.through(tid, "assign", "accept")
    assert (await t.act("maintenance", tid, "check_in")).status == 409
    reply = await t.act("maintenance", tid, "resolve", notes="cleaned the stairwell")
    assert reply.body["state"] == "resolved"


async def test_wechat_messages_spend_reported_credits(t, world, app, http_client, settings):
    tid = (await t.report()).body["id"]
    template = settings.wechat_ticket_template
    # The mini-program reports what the user accepted in wx.requestSubscribeMessage.
    reply = await t.http.post("/api/me/subscriptions",
                              {"ticket_id": tid, "results": {template: "accept", "other": "reject"}},
                              token=world.tokens["ann"])
    assert reply.body == {template: 1, "other": 0}
    bobs = await t.http.post("/api/me/subscriptions",
                             {"ticket_id": tid, "results": {template: "accept"}},
                             token=world.tokens["bob"])
    assert bobs.status == 404  # not bob's ticket
    await _fake_wechat_credit(http_client, settings, "openid-ann", template)

    await t.through(tid, "assign")  # one credit: sent
    await t.through(tid, "accept", "check_in")  # none left: in-app only
    sent = await _fake_wechat_sent(http_client, settings, tid)
    assert [(m["touser"], m["data"]["phrase2"]["value"]) for m in sent] == [("openid-ann", "已派单")]
    assert sent[0]["page"] == f"pages/tickets/detail?id={tid}"
    # The time the resident reads is on the community's wall clock (its zone), not UTC.
    local = app.clock.now().astimezone(ZoneInfo("Asia/Shanghai"))
    assert sent[0]["data"]["time4"]["value"] == local.strftime("%Y-%m-%d %H:%M")

    # We count a credit WeChat no longer has (43101): treated as none, and forgotten.
    await t.http.post("/api/me/subscriptions", {"results": {template: "accept"}},
                      token=world.tokens["ann"])
    await t.through(tid, "resolve")
    messages = (await t.http.get("/api/me/messages", token=world.tokens["ann"])).body
    assert [(m["kind"], m["wechat"]) for m in messages] == [
        ("待确认", "no_credit"), ("已到场", "no_credit"), ("已派单", "sent")]
    assert (await app.db.subscribe_credits.find_one({"_id": f"{world.ann}:{template}:*"}))["count"] == 0
    read = await t.http.post(f"/api/me/messages/{messages[0]['id']}/read", token=world.tokens["ann"])
    assert read.body["read"] is True


async def _fake_wechat_credit(http_client, settings, openid, template):
    await http_client.fetch(f"{settings.wechat_base_url}/_fake/credits", method="POST",
                            body=f'{{"openid": "{openid}", "template_id": "{template}", "count": 1}}')


async def _fake_wechat_sent(http_client, settings, tid):
    """The ticket's messages sent (the fake serves the whole session: other tests send too)."""
    import json
    reply = await http_client.fetch(f"{settings.wechat_base_url}/_fake/stats")
    return [m for m in json.loads(reply.body)["sent"]
            if m["template_id"] == settings.wechat_ticket_template
            and m["page"].endswith(f"id={tid}")]


async def test_in_room_visit_gives_the_worker_a_door_pass_until_resolved(t, world, app):
    tid = (await t.report()).body["id"]
    start = "2026-11-02T06:00:00+00:00"
    reply = await t.act("customer_service", tid, "assign", assignee_id=world.c.staff["maintenance"],
                        appointment_start=start, appointment_end="2026-11-02T08:00:00+00:00")
    assert reply.body["appointment"]["start"] == start
    pass_id = (await t.get("customer_service", tid)).body["worker_pass_id"]
    door_pass = await app.db.passes.find_one({})
    assert str(door_pass["_id"]) == pass_id
    assert (door_pass["kind"], door_pass["host_room"], door_pass["state"]) == \
        ("worker", "1-1-101", "active")
    assert sorted(door_pass["gates"]) == ["main", "u1-1"]
    assert door_pass["valid_from"].isoformat() == start
    await t.through(tid, "accept", "check_in", "resolve")
    assert (await app.db.passes.find_one({}))["state"] == "cancelled"
    assert (await t.get("customer_service", tid)).body["worker_pass_id"] is None


async def test_dispatchers_list_assignable_staff_and_others_may_not(t, world):
    path = f"/api/communities/{world.c.id}/assignees"
    reply = await t.http.get(path, token=world.tokens["customer_service"])
    assert reply.status == 200, reply.body
    by_role = {m["roles"][0]: m for m in reply.body}
    assert set(by_role) == set(STAFF_ROLES)
    assert set(by_role["maintenance"]) == {"id", "name", "roles"}  # no account details
    assert by_role["maintenance"]["id"] == world.c.staff["maintenance"]
    for role in ("maintenance", "security"):
        assert (await t.http.get(path, token=world.tokens[role])).status == 403
    assert (await t.http.get(path, token=world.tokens["ann"])).status == 403
