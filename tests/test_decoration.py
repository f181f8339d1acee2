"""Decoration permits over HTTP: the owner applies, the office approves, workers' passes open the
gates inside hours and dates, a violation suspends them at once, acceptance ends them."""

from datetime import UTC, datetime, time, timedelta

import pytest
import pytest_asyncio
from bson import ObjectId

from models.common import ManualClock
from server.gate_hub import GateHub, HubOptions
from models.decoration import FORBIDDEN_WORKS, PERMIT_WORKFLOW, STATES
from tests.builders import make_community, make_resident
from tests.gate_fixtures import hub, start_sim_bridge  # noqa: F401 (a fixture)
from tests.test_photos import image_bytes, multipart, phone_photo
from tests.tickets_support import settings  # noqa: F401 (tokens outliving the clock's moves)

pytestmark = pytest.mark.asyncio

# 10:00 in China today: near the real clock (sessions and the outbox's records expire by it).
START = datetime.combine(datetime.now(UTC).date(), time(2, 0), UTC)
WORKERS = [{"name": "张师傅", "id_last4": "123X", "phone": "13800000001"},
           {"name": "李师傅", "id_last4": "4567", "phone": "13800000002"}]


@pytest.fixture
def clock():
    return ManualClock(START)


class Permits:
    def __init__(self, app, http, c, tokens):
        self.app, self.http, self.c, self.tokens = app, http, c, tokens
        self.base = f"/api/communities/{c.id}/decoration-permits"

    async def apply(self, who="ann", **over):
        body = {"room_path": "1-1-101", "start": START.isoformat(),
                "end": (START + timedelta(days=20)).isoformat(), "company": "好家装修",
                "manager_phone": "13900000000", "scope": "厨房、卫生间翻新", "workers": WORKERS,
                "acknowledged": list(FORBIDDEN_WORKS), **over}
        return await self.http.post(self.base, body, token=self.tokens[who])

    async def act(self, who, permit_id, action, **fields):
        return await self.http.post(f"{self.base}/{permit_id}/actions", {"action": action, **fields},
                                    token=self.tokens[who])

    async def passes(self, permit_id):
        permit = (await self.http.get(f"{self.base}/{permit_id}", token=self.tokens["manager"])).body
        return [await self.app.db.passes.find_one({"_id": ObjectId(p["id"])})
                for p in permit["passes"]]

    async def upload(self, who, permit_id, *files, stage="application"):
        body, headers = multipart(*files)
        return await self.http.call("POST", f"{self.base}/{permit_id}/photos?stage={stage}",
                                    raw=body, headers=headers, token=self.tokens[who])

    async def scan(self, token):
        reply = await self.http.post(f"/api/communities/{self.c.id}/gates/{self.c.gates['main']}/check",
                                     {"token": token, "direction": "in"}, token=self.tokens["security"])
        assert reply.status == 200, reply.body
        return reply.body["reason"]


@pytest_asyncio.fixture
async def p(app, api_client):
    c = await make_community(app, "dec")
    _, ann = await make_resident(app, c, "dec-ann", "1-1-101")
    _, tom = await make_resident(app, c, "dec-tom", "1-1-101", "family")
    return Permits(app, api_client, c, {**c.tokens, "ann": ann, "tom": tom})


async def test_the_owner_applies_with_every_forbidden_work_acknowledged(p):
    reply = await p.apply("tom")  # family, not the owner
    assert reply.status == 400 and reply.error["fields"] == {"room_path": "应为您名下的房间"}  # Chinese unless asked
    reply = await p.apply(acknowledged=["load_bearing_walls"])
    assert reply.status == 400 and "moving_gas_pipes" in reply.error["fields"]["acknowledged"]
    bad = await p.apply(workers=[{"name": "x", "id_last4": "12", "phone": "1"}])
    assert bad.status == 400 and "workers.0.id_last4" in bad.error["fields"]
    assert (await p.apply("customer_service")).status == 403  # staff do not apply
    reply = await p.apply()
    assert reply.status == 201, reply.body
    assert (reply.body["state"], reply.body["allowed_actions"]) == ("submitted", ["withdraw"])
    listed = (await p.http.get(p.base, token=p.tokens["tom"])).body
    assert listed == []  # residents see their own applications


async def test_approval_gives_each_worker_a_pass_inside_hours_and_dates(app, p, clock):
    permit_id = (await p.apply()).body["id"]
    assert (await p.act("ann", permit_id, "approve")).status == 403
    assert (await p.act("security", permit_id, "approve")).status == 403
    reply = await p.act("customer_service", permit_id, "approve", hours_start="08:00",
                        hours_end="12:00", deposit=2000)
    assert reply.status == 200, reply.body
    assert (reply.body["state"], reply.body["deposit"], reply.body["hours"]) == \
        ("approved", 2000, ["08:00", "12:00"])
    passes = await p.passes(permit_id)
    assert [(d["kind"], d["visitor"]["name"], d["host_room"], d["state"]) for d in passes] == [
        ("worker", "张师傅", "1-1-101", "active"), ("worker", "李师傅", "1-1-101", "active")]
    assert passes[0]["hours"] == [32, 48] and passes[0]["valid_to"] == START + timedelta(days=20)
    token = passes[0]["token"]
    assert await p.scan(token) == "ok"  # 10:00 on a working day of the permit
    clock.advance(3 * 3600)  # 13:00: outside the working hours
    assert await p.scan(token) == "outside_hours"
    entries = await p.http.get(f"{p.base}/{permit_id}/entries", token=p.tokens["manager"])
    assert entries.status == 200, entries.body
    assert [(e["worker"], e["result"], e["reason"]) for e in entries.body] == [
        ("张师傅", "deny", "outside_hours"), ("张师傅", "allow", "ok")]
    assert (entries.body[0]["gate_name"], entries.body[0]["words"]["reason"]) == ("main", "不在通行时段")
    assert (await p.http.get(f"{p.base}/{permit_id}/entries", token=p.tokens["ann"])).status == 403
    clock.current = START + timedelta(days=21)  # after the permit
    p.tokens["security"] = (await app.auth.start_session(p.c.staff["security"], "staff"))["access_token"]
    assert await p.scan(token) == "expired"


async def test_a_violation_suspends_the_passes_at_once_until_rectified(app, p):
    permit_id = (await p.apply()).body["id"]
    await p.act("manager", permit_id, "approve")
    token = (await p.passes(permit_id))[0]["token"]
    inspected = await p.act("maintenance", permit_id, "inspect",
                            checklist={"fire_safety": "ok", "structure_untouched": "problem"},
                            findings="拆了承重墙一角", violation=True)
    assert inspected.status == 200, inspected.body
    assert inspected.body["inspections"] == 1 and inspected.body["state"] == "approved"
    entry = inspected.body["history"][-1]
    assert (entry["action"], entry["findings"], entry["violation"]) == ("inspect", "拆了承重墙一角", True)
    bad = await p.act("maintenance", permit_id, "inspect", checklist={"paint": "ok"})
    assert bad.status == 400 and "checklist.paint" in bad.error["fields"]

    assert (await p.act("maintenance", permit_id, "suspend")).status == 400  # a reason
    suspended = await p.act("security", permit_id, "suspend", reason="承重墙")
    assert suspended.body["state"] == "suspended"
    assert [d["state"] for d in await p.passes(permit_id)] == ["cancelled", "cancelled"]
    assert await p.scan(token) == "revoked"
    assert (await p.act("security", permit_id, "resume", reason="x")).status == 403  # the office
    resumed = await p.act("manager", permit_id, "resume", reason="已整改复原")
    assert resumed.body["state"] == "approved"
    states = [d["state"] for d in await p.passes(permit_id)]
    assert states == ["cancelled", "cancelled", "active", "active"]
    fresh = (await p.passes(permit_id))[2]["token"]
    assert await p.scan(fresh) == "ok"

    done = await p.act("manager", permit_id, "accept", deposit_returned=2000, notes="验收合格")
    assert (done.body["state"], done.body["deposit_returned"]) == ("completed", 2000)
    assert all(d["state"] == "cancelled" for d in await p.passes(permit_id))
    assert done.body["allowed_actions"] == []


async def test_worker_passes_open_a_real_gate_on_working_days_only_online_and_offline(
        app, p, clock, hub, tmp_path):
    reply = await p.http.patch(f"/api/communities/{p.c.id}", {"settings": {
        "decoration_days": ["mon", "tue", "wed", "thu", "fri", "sat"]}}, token=p.tokens["admin"])
    assert reply.status == 200, reply.body
    default = (await p.apply()).body["id"]
    approved = await p.act("manager", default, "approve")
    assert approved.body["days"] == ["mon", "tue", "wed", "thu", "fri", "sat"]  # the community's
    chosen = (await p.apply()).body["id"]
    bad = await p.act("manager", chosen, "approve", days=["mon", "someday"])
    assert bad.status == 400 and "days.1" in bad.error["fields"]
    approved = await p.act("manager", chosen, "approve", days=["fri", "mon", "tue", "wed", "thu"])
    assert approved.body["days"] == ["mon", "tue", "wed", "thu", "fri"]
    token = (await p.passes(chosen))[0]["token"]
    creds = await app.bridges.provision(p.c.id, p.c.gates["main"], p.c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"],
                                 clock=app.clock.time, auto_door=False)
    monday = START + timedelta(days=7 - START.weekday())  # 10:00 in China, inside the hours

    async def scan_at(moment) -> tuple:
        clock.current = moment
        outcome = await sim.bridge.handle_scan(token)
        return outcome["source"], outcome["allow"], outcome["reason"]

    try:
        await sim.bridge.wait(lambda: (sim.bridge.store.config() or {}).get("gate"))
        assert await scan_at(monday) == ("server", True, "ok")
        assert await scan_at(monday + timedelta(days=5)) == ("server", False, "outside_days")
        await hub.stop()  # the network is down: the bridge decides on its own
        await sim.bridge.wait(lambda: sim.bridge.writer is None)
        assert await scan_at(monday + timedelta(days=5)) == ("bridge", False, "outside_days")
        assert await scan_at(monday + timedelta(days=4)) == ("bridge", True, "ok")  # Friday
        back = GateHub(app, HubOptions())  # the network is back: the server re-checks both
        await back.start(hub.port, "127.0.0.1")
        try:
            await sim.bridge.wait(lambda: sim.bridge.sessions == 2 and sim.bridge.store.count == 0)
            await back.wait(lambda: back.idle)
        finally:
            await back.stop()
    finally:
        await sim.stop()
    lines = (await app.access_log.query(p.c.id, gate_id=p.c.gates["main"]))["items"]
    assert sorted((e["source"], e["result"], e["reason"], e.get("flag")) for e in lines) == [
        ("gate", "allow", "ok", None), ("gate", "deny", "outside_days", None),
        ("offline", "allow", "ok", None), ("offline", "deny", "outside_days", None)]
    p.tokens["security"] = (await app.auth.start_session(p.c.staff["security"], "staff"))[
        "access_token"]
    assert await p.scan(token) == "ok"  # the guard's scanner: Friday
    clock.current = monday + timedelta(days=6)
    p.tokens["security"] = (await app.auth.start_session(p.c.staff["security"], "staff"))[
        "access_token"]
    assert await p.scan(token) == "outside_days"  # Sunday


async def test_drawings_go_with_the_application_and_inspections_cite_their_photos(
        p, http_client, base_url):
    permit_id = (await p.apply()).body["id"]
    assert (await p.upload("tom", permit_id, image_bytes("PNG"))).status == 404  # not his
    assert (await p.upload("manager", permit_id, image_bytes("PNG"))).status == 403  # the owner's
    reply = await p.upload("ann", permit_id, image_bytes("PNG"), phone_photo())
    assert reply.status == 201, reply.body
    assert [(ph["stage"], ph["content_type"]) for ph in reply.body["photos"]] == [
        ("application", "image/png"), ("application", "image/jpeg")]
    drawing = await http_client.fetch(base_url + reply.body["photos"][1]["url"])  # signed: no bearer
    assert drawing.headers["Content-Type"] == "image/jpeg" and b"GPS" not in drawing.body
    too_many = await p.upload("ann", permit_id, *[image_bytes("PNG")] * 8)
    assert too_many.status == 422 and too_many.error["fields"] == {"photo": "还可上传 7 张"}
    early = await p.upload("maintenance", permit_id, image_bytes("PNG"), stage="inspection")
    assert early.status == 409  # nothing to inspect before approval
    await p.act("manager", permit_id, "approve")
    late = await p.upload("ann", permit_id, image_bytes("PNG"))
    assert late.status == 409  # the office has decided on the drawings it saw

    site = await p.upload("maintenance", permit_id, phone_photo(), stage="inspection")
    assert site.status == 201, site.body
    photo_id = site.body["photos"][-1]["id"]
    bad = await p.act("maintenance", permit_id, "inspect", photos=[site.body["photos"][0]["id"]])
    assert bad.status == 400 and "photos" in bad.error["fields"]  # a drawing is no site photo
    inspected = await p.act("maintenance", permit_id, "inspect", checklist={"fire_safety": "ok"},
                            photos=[photo_id])
    assert inspected.status == 200, inspected.body
    assert inspected.body["history"][-1]["photos"] == [photo_id]
    mine = (await p.http.get(f"{p.base}/{permit_id}", token=p.tokens["ann"])).body
    assert [ph["stage"] for ph in mine["photos"]] == ["application", "application", "inspection"]


async def test_rejection_needs_a_reason_and_the_owner_may_withdraw(p):
    first = (await p.apply()).body["id"]
    assert (await p.act("manager", first, "reject")).error["fields"] == {"reason": "拒绝时必填"}
    rejected = await p.act("manager", first, "reject", reason="图纸不全")
    assert rejected.body["state"] == "rejected" and rejected.body["passes"] == []
    second = (await p.apply()).body["id"]
    assert (await p.act("tom", second, "withdraw")).status == 404  # not tom's
    assert (await p.act("ann", second, "withdraw")).body["state"] == "withdrawn"
    again = await p.act("ann", second, "withdraw")
    assert again.status == 409 and again.error["message"] == "装修许可已撤回，不能撤回"


async def test_every_permit_action_names_known_states():
    from models.workflow import SAME
    for act in PERMIT_WORKFLOW.actions:
        assert act.sources <= set(STATES) and act.target in set(STATES) | {SAME}
