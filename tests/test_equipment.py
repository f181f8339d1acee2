"""The equipment register and inspections over HTTP with the injectable clock: plans by kind,
due and overdue, inspections with the check-in proof, faults, repairs, retirement, who may
do each, the audit trail, photos and the KPI figures."""

from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from models.common import ManualClock
from tests.builders import make_community
from tests.test_photos import image_bytes, multipart

pytestmark = pytest.mark.asyncio

START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in China
DAY = 86400
ROLES = ("admin", "manager", "customer_service", "security", "security_lead", "maintenance")


@pytest.fixture
def clock():
    return ManualClock(START)


class Register:
    def __init__(self, app, http, c):
        self.app, self.http, self.c = app, http, c
        self.base = f"/api/communities/{c.id}/equipment"

    async def token(self, who):
        # a fresh one each time: these tests move the clock by weeks
        return (await self.app.auth.start_session(self.c.staff[who], "staff"))["access_token"]

    async def get(self, who, path="", **kw):
        return await self.http.get(self.base + path, token=await self.token(who), **kw)

    async def post(self, who, path, body, **kw):
        return await self.http.post(self.base + path, body, token=await self.token(who), **kw)

    async def patch(self, who, path, body):
        return await self.http.call("PATCH", self.base + path, body, token=await self.token(who))

    async def add(self, who="manager", **item):
        return await self.post(who, "", {"kind": "fire_extinguisher", "name": "1号楼灭火器",
                                         "tag_code": "E1", **item})

    async def inspect(self, code, who="security", **over):
        body = {"code": code, "device": f"{who}-phone",
                "scanned_at": self.app.clock.now().isoformat(), **over}
        return await self.post(who, "/inspections", body)


@pytest_asyncio.fixture
async def reg(app, api_client):
    return Register(app, api_client, await make_community(app, "eq"))


async def test_only_the_office_registers_and_plans_follow_the_kind(reg):
    for who in ("customer_service", "security", "security_lead", "maintenance"):
        assert (await reg.add(who)).status == 403, who
    made = await reg.add(place_path="1-1", serial="MFZ/ABC4", model="4kg",
                         expires_on="2027-06-30", installed_on="2024-06-30")
    assert made.status == 201, made.body
    item = made.body
    assert (item["state"], item["interval_days"], item["interval_overridden"]) == \
        ("in_service", 30, False)
    assert item["next_due_at"] == (START + timedelta(days=30)).isoformat()
    assert item["expires_at"] == "2027-06-29T16:00:00+00:00"  # midnight on the community's clock
    assert "pressure_in_green" in item["checklist"]
    assert item["check_words"]["pressure_in_green"] == ["压力指针在绿区", "Pressure in the green"]
    assert item["history"][0]["by"] == reg.c.staff["manager"]
    lift = await reg.add(kind="elevator", name="2号电梯", tag_code="L2")
    assert (lift.body["interval_days"], lift.body["next_due_at"]) == \
        (15, (START + timedelta(days=15)).isoformat())
    pump = await reg.add(kind="pump", name="消防泵", tag_code="P1", interval_days=3)
    assert (pump.body["interval_days"], pump.body["interval_overridden"]) == (3, True)

    taken = await reg.add(name="again")
    assert taken.status == 400 and taken.error["fields"] == {"tag_code": "已是某台设备的标签"}
    nowhere = await reg.add(tag_code="E9", place_path="9-9")
    assert nowhere.status == 400 and "place_path" in nowhere.error["fields"]
    odd = await reg.add(tag_code="E8", kind="toaster")
    assert odd.status == 400 and "kind" in odd.error["fields"]
    kinds = (await reg.http.get(f"/api/communities/{reg.c.id}/equipment-kinds",
                                token=await reg.token("security"))).body
    assert kinds["hydrant"]["interval_days"] == 30 and kinds["elevator"]["interval_days"] == 15


async def test_the_register_and_overdue_list_put_the_most_overdue_first(reg, clock):
    await reg.add(tag_code="E1", name="灭火器")  # due in 30 days
    await reg.add(tag_code="P1", name="水泵", kind="pump")  # due in 7
    await reg.add(tag_code="H1", name="消火栓", kind="hydrant", expires_on="2026-11-05")  # in 3
    clock.advance(10 * DAY)
    listed = (await reg.get("security")).body
    assert [(i["tag_code"], i["overdue"], i["overdue_days"]) for i in listed] == \
        [("H1", True, 7), ("P1", True, 3), ("E1", False, 0)]
    assert listed[0]["expired"] is True and listed[2]["expired"] is False
    overdue = (await reg.get("maintenance", "?overdue=true")).body
    assert [i["tag_code"] for i in overdue] == ["H1", "P1"]
    assert [i["tag_code"] for i in (await reg.get("manager", "?kind=pump")).body] == ["P1"]
    assert (await reg.get("manager", "?state=faulty")).body == []
    assert (await reg.get("manager", "?state=broken")).status == 400
    other = await make_community(reg.app, "ot")
    stranger = await reg.http.get(reg.base, token=other.tokens["manager"])
    assert stranger.status == 404  # another community's register is not even there


async def test_an_inspection_needs_the_tag_scanned_now_by_an_inspector(reg, clock):
    item = (await reg.add()).body
    await reg.add(tag_code="E2", name="2号灭火器")
    clock.advance(40 * DAY)
    stale = await reg.inspect("E1", scanned_at=(clock.now() - timedelta(minutes=5)).isoformat())
    assert stale.status == 400 and "scanned_at" in stale.error["fields"]
    assert (await reg.inspect("E1", who="customer_service")).status == 403
    unknown = await reg.inspect("ZZ")
    assert unknown.status == 400 and unknown.error["fields"] == {"code": "未知的标签编号"}
    mismatch = await reg.inspect("E2", equipment_id=item["id"])
    assert mismatch.status == 400 and mismatch.error["fields"] == {"code": "不是这台设备的标签"}
    bad = await reg.inspect("E1", answers={"paint": "ok"})
    assert bad.status == 400 and "answers" in bad.error["fields"]
    unsaid = await reg.inspect("E1", answers={"seal_intact": "problem"})
    assert unsaid.status == 400 and unsaid.error["fields"] == {"note": "有问题时必填"}
    assert (await reg.get("manager", f"/{item['id']}/inspections")).body == []  # nothing kept

    done = await reg.inspect("E1", who="maintenance", equipment_id=item["id"],
                             location={"latitude": 31.2, "longitude": 121.5},
                             answers={"pressure_in_green": "ok", "seal_intact": "ok"})
    assert done.status == 201, done.body
    record, after = done.body["inspection"], done.body["item"]
    assert (record["by"], record["device"], record["location"]["latitude"], record["result"]) == \
        (reg.c.staff["maintenance"], "maintenance-phone", 31.2, "ok")
    assert after["last_checked_at"] == clock.now().isoformat() and after["overdue"] is False
    assert after["next_due_at"] == (clock.now() + timedelta(days=30)).isoformat()
    assert [i["tag_code"] for i in (await reg.get("security", "?overdue=true")).body] == ["E2"]
    entry = after["history"][-1]
    assert (entry["action"], entry["by"], entry["inspection"]) == \
        ("check", reg.c.staff["maintenance"], record["id"])


async def test_a_problem_makes_it_faulty_until_a_technician_repairs_it(reg, clock):
    item = (await reg.add()).body
    path = f"/{item['id']}"
    found = await reg.inspect("E1", answers={"pressure_in_green": "problem"}, note="压力不足")
    assert found.status == 201
    faulty = found.body["item"]
    assert (faulty["state"], faulty["open_findings"], faulty["last_result"]) == ("faulty", 1, "problem")
    assert [i["tag_code"] for i in (await reg.get("manager", "?state=faulty")).body] == ["E1"]
    again = await reg.inspect("E1", who="security_lead")  # inspected while faulty: stays faulty
    assert again.body["item"]["state"] == "faulty"

    for who in ("security", "customer_service"):
        refused = await reg.post(who, f"{path}/repair", {"reason": "换了"})
        assert refused.status == 403, who
    assert (await reg.post("maintenance", f"{path}/repair", {})).status == 400
    fixed = await reg.post("maintenance", f"{path}/repair", {"reason": "充装"})
    assert fixed.status == 200, fixed.body
    assert (fixed.body["state"], fixed.body["open_findings"]) == ("in_service", 0)
    twice = await reg.post("manager", f"{path}/repair", {"reason": "again"})
    assert twice.status == 409 and twice.error["code"] == "illegal_transition"
    [_, first] = (await reg.get("manager", f"{path}/inspections")).body
    assert first["result"] == "problem" and first["resolved_at"] == fixed.body["repaired_at"]
    shown = (await reg.get("customer_service", path)).body
    assert shown["names"][reg.c.staff["maintenance"]] == "maintenance"  # builders name staff by role
    assert [i["result"] for i in shown["inspections"]] == ["ok", "problem"]
    history = shown["history"]
    assert [(h["action"], h["to"]) for h in history] == [
        ("create", "in_service"), ("fault", "faulty"), ("check", "faulty"), ("repair", "in_service")]
    assert history[-1]["reason"] == "充装" and history[-1]["by"] == reg.c.staff["maintenance"]


async def test_the_office_edits_and_retires_items(reg, clock):
    item = (await reg.add()).body
    await reg.add(tag_code="E2", name="另一个")
    path = f"/{item['id']}"
    assert (await reg.patch("security", path, {"interval_days": 7})).status == 403
    assert (await reg.patch("manager", path, {})).status == 400
    weekly = await reg.patch("manager", path, {"interval_days": 7, "name": "1号楼1单元灭火器"})
    assert weekly.status == 200, weekly.body
    assert weekly.body["next_due_at"] == (START + timedelta(days=7)).isoformat()
    assert weekly.body["history"][-1]["changes"] == ["interval_days", "name"]
    default = await reg.patch("manager", path, {"interval_days": None})
    assert default.body["interval_days"] == 30
    taken = await reg.patch("manager", path, {"tag_code": "E2"})
    assert taken.status == 400 and "tag_code" in taken.error["fields"]

    assert (await reg.post("maintenance", f"{path}/retire", {"reason": "过期"})).status == 403
    retired = await reg.post("admin", f"{path}/retire", {"reason": "报废更换"})
    assert (retired.body["state"], retired.body["due_at"]) == ("retired", None)
    clock.advance(60 * DAY)
    assert [i["tag_code"] for i in (await reg.get("manager", "?overdue=true")).body] == ["E2"]
    assert [i["tag_code"] for i in (await reg.get("manager")).body] == ["E2", "E1"]  # retired last
    late = await reg.inspect("E1")
    assert late.status == 409 and late.error["code"] == "illegal_transition"
    assert (await reg.patch("manager", path, {"name": "x"})).status == 409


async def test_photos_go_with_ones_own_inspection(reg, http_client, base_url):
    await reg.add()
    record = (await reg.inspect("E1", answers={"seal_intact": "problem"}, note="铅封断了")).body["inspection"]
    body, headers = multipart(image_bytes("PNG"))
    path = f"{reg.base}/inspections/{record['id']}/photos"
    theirs = await reg.http.call("POST", path, raw=body, headers=headers,
                                 token=await reg.token("maintenance"))
    assert theirs.status == 403
    mine = await reg.http.call("POST", path, raw=body, headers=headers,
                               token=await reg.token("security"))
    assert mine.status == 201, mine.body
    [photo] = mine.body["photos"]
    image = await http_client.fetch(base_url + photo["url"])  # a signed link, no bearer
    assert image.headers["Content-Type"] == "image/png"


async def test_kpi_coverage_overdue_and_open_findings(reg, clock):
    await reg.add(tag_code="E1")
    await reg.add(tag_code="E2")
    await reg.add(tag_code="P1", kind="pump")
    await reg.add(tag_code="X1", kind="other", name="已报废")
    [gone] = (await reg.get("manager", "?kind=other")).body
    await reg.post("manager", f"/{gone['id']}/retire", {"reason": "拆除"})
    clock.advance(9 * DAY)  # the pump (weekly) is overdue
    assert (await reg.inspect("E1")).status == 201
    assert (await reg.inspect("E2", answers={"seal_intact": "problem"}, note="铅封断")).status == 201
    kpi = (await reg.http.get(f"/api/communities/{reg.c.id}/kpi?period=day",
                              token=await reg.token("manager"))).body
    coverage = kpi["inspection_coverage"]
    assert (coverage["covered"], coverage["items"], coverage["value"], coverage["meets"]) == \
        (2, 3, 0.6667, False)
    assert (kpi["equipment_overdue"]["value"], kpi["equipment_overdue"]["meets"]) == (1, False)
    assert kpi["equipment_open_findings"]["value"] == 1
    assert (await reg.http.get(f"/api/communities/{reg.c.id}/kpi?period=day",
                               token=await reg.token("security"))).status == 403
    # The day before: nothing checked yet, the pump already overdue.
    before = (await reg.http.get(f"/api/communities/{reg.c.id}/kpi?period=day&day=2026-11-10",
                                 token=await reg.token("manager"))).body
    assert (before["inspection_coverage"]["covered"], before["equipment_overdue"]["value"],
            before["equipment_open_findings"]["value"]) == (0, 1, 0)


async def test_a_problem_becomes_a_repair_ticket_in_one_step(reg):
    lift = (await reg.add(kind="elevator", name="2号电梯", tag_code="L2", place_path="1")).body
    fine = (await reg.inspect("L2", answers={"doors": "ok"})).body["inspection"]
    found = (await reg.inspect("L2", answers={"doors": "ok", "alarm_button": "problem"},
                               note="警铃不响")).body["inspection"]
    path = f"{reg.base}/inspections/{found['id']}/ticket"
    assert (await reg.post("security", f"/inspections/{fine['id']}/ticket", {})).error["code"] == \
        "no_problem"
    assert (await reg.post("maintenance", f"/inspections/{found['id']}/ticket", {})).status == 403
    made = await reg.http.post(path, {}, token=await reg.token("security"))
    assert made.status == 201, made.body
    ticket = made.body
    assert (ticket["kind"], ticket["category"], ticket["priority"], ticket["place_path"]) == \
        ("repair", "lift", "urgent", "1")
    assert ticket["description"] == "巡检发现：2号电梯（L2）警铃/对讲正常：警铃不响"
    again = await reg.http.post(path, {"category": "other"}, token=await reg.token("customer_service"))
    assert (again.status, again.body["id"]) == (200, ticket["id"])  # one finding, one ticket
    [latest, _] = (await reg.get("manager", f"/{lift['id']}/inspections")).body
    assert latest["ticket_id"] == ticket["id"]


async def test_the_register_is_imported_from_a_sheet_once(reg):
    sheet = ("类型,名称,标签编号,位置,有效期至,巡检周期\n"
             "灭火器,1单元灭火器,E1,1-1,2027-06-30,\n"
             "消防泵,消防泵,P1,,,3\n"
             "toaster,烤箱,T1,,,\n"
             "电梯,2号电梯,P1,9-9,明年,400\n"
             ",,,,,\n").encode()
    path = f"{reg.base}/import"
    assert (await reg.http.call("POST", path, raw=sheet, token=await reg.token("maintenance"),
                                headers={"Content-Type": "text/csv"})).status == 403
    first = await reg.http.call("POST", path, raw=sheet, token=await reg.token("manager"),
                                headers={"Content-Type": "text/csv"})
    assert first.status == 200, first.body
    report = first.body
    assert (report["rows"], report["created"], report["existing"], report["failed"]) == (4, 2, 0, 2)
    assert {(e["row"], e["column"]) for e in report["errors"]} == {
        (4, "kind"), (5, "tag_code"), (5, "place_path"), (5, "expires_on"), (5, "interval_days")}
    assert next(e for e in report["errors"] if e["column"] == "tag_code")["problem"] == "与前面某行重复"
    items = {i["tag_code"]: i for i in (await reg.get("security")).body}
    assert items["P1"]["interval_days"] == 3 and items["P1"]["kind"] == "pump"
    e1 = (await reg.get("security", f"/{items['E1']['id']}")).body
    assert (e1["expires_on"], e1["place_path"], e1["history"][0]["by"]) == \
        ("2027-06-30", "1-1", reg.c.staff["manager"])
    again = await reg.http.call("POST", path, raw=sheet, token=await reg.token("manager"),
                                headers={"Content-Type": "text/csv"})
    assert (again.body["created"], again.body["existing"]) == (0, 2)
    headless = await reg.http.call("POST", path, raw=b"a,b\n1,2\n", token=await reg.token("manager"),
                                   headers={"Content-Type": "text/csv"})
    assert headless.status == 400 and "file" in headless.error["fields"]


async def test_the_tag_sheet_prints_each_item_in_service_once(reg):
    await reg.add(tag_code="E1", place_path="1-1")
    await reg.add(tag_code="h-2", kind="hydrant", name="北门消火栓")  # lower case: a byte-mode QR
    gone = (await reg.add(tag_code="E3", name="旧灭火器")).body
    assert (await reg.post("manager", f"/{gone['id']}/retire", {"reason": "报废更换"})).status == 200
    assert (await reg.inspect("E1", answers={"seal_intact": "problem"}, note="铅封断了")).status == 201

    assert (await reg.get("security", "/sheet")).status == 403  # the office prints the tags
    tags = (await reg.get("manager", "/sheet")).body
    # the faulty E1 keeps its tag (it is inspected again once repaired); retired E3 is left out
    assert [(t["code"], t["name"], t["payload"]) for t in tags] == [
        ("h-2", "北门消火栓", "XQEQ:h-2"), ("E1", "1号楼灭火器", "XQEQ:E1")]
    assert all(t["qr"].startswith("data:image/svg+xml;base64,") for t in tags)
    other = await make_community(reg.app, "ou")
    assert (await reg.http.get(reg.base + "/sheet", token=other.tokens["manager"])).status == 404
