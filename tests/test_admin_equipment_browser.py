"""The equipment screens in Chromium: the Today count of overdue items, the overdue list
most overdue first, an inspection at a typed tag code with a problem, photo and one-step
repair ticket; a guard's camera scanning an item's printed tag, or the phone reading its NFC sticker;
one phone recorded as one device by a patrol check-in and an inspection; the office registers an item,
imports the register, prints the items' QR sheet, filters the register, repairs it; the KPI rows."""

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import expect

from models.access import Principal
from models.check_ins import tag_payload
from models.common import Clock
from models.equipment import TAG_PREFIX
from tests.browser import camera_chromium, decode_qr, nfc_reader
from tests.builders import make_community
from tests.patrol_support import set_up
from tests.test_photos import image_bytes

pytestmark = pytest.mark.asyncio


class ShiftedClock(Clock):
    """The real clock moved by `offset`: items are registered weeks ago, then the page (whose
    scans carry the phone's real time) works at offset 0."""

    offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock():
    return ShiftedClock()


@pytest.fixture(scope="module")
def camera_endpoint(tmp_path_factory):
    """A Chromium whose camera shows item E1's printed tag."""
    with camera_chromium(tmp_path_factory.mktemp("camera") / "e1.y4m",
                         tag_payload(TAG_PREFIX, "E1")) as endpoint:
        yield endpoint


async def register(app, c, days_ago, **item):
    app.clock.offset = -timedelta(days=days_ago)
    office = Principal("staff", c.staff["manager"], {c.id: frozenset({"manager"})})
    doc = await app.equipment.register(office, c.id, **item)
    app.clock.offset = timedelta()
    return doc


async def register_screen(admin, username):
    """The register as staff reach it: signed in as `username`, then 更多 → 设备巡检."""
    page = await admin.open()
    await admin.sign_in(page, username)
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("设备巡检").click()
    return page


async def test_a_guard_inspects_an_overdue_item_and_makes_its_repair_ticket(app, admin, api_client):
    c = await make_community(app, "ea")
    await register(app, c, 40, kind="fire_extinguisher", name="1单元灭火器", tag_code="E1", place_path="1-1")
    await register(app, c, 40, kind="pump", name="生活水泵", tag_code="P1")
    await register(app, c, 40, kind="elevator", name="1号电梯", tag_code="L1", place_path="1")
    await register(app, c, 10, kind="hydrant", name="北门消火栓", tag_code="H1")

    page = await admin.open()
    await admin.sign_in(page, "ea-security")
    await expect(page.locator('[data-test="equipment-overdue"]')).to_have_text("3")
    await page.locator('[data-test="equipment-overdue"]').click()
    rows = page.locator(".items [data-item]")
    await expect(rows).to_have_count(3)
    assert [await r.get_attribute("data-item") for r in await rows.all()] == ["P1", "L1", "E1"]
    await expect(rows.first).to_contain_text("逾期 33 天")
    await admin.check_screen(page, "equipment-overdue")

    await page.get_by_role("button", name="扫码巡检").click()
    await page.get_by_label("标签编号").fill("E1")
    await page.get_by_role("button", name="查找").click()
    await expect(page.locator('[data-test="inspected-item"]')).to_contain_text("1单元灭火器")
    await page.locator('[data-check="seal_intact"]').get_by_role("radio", name="有问题").click()
    await page.get_by_label("说明").fill("铅封断了")
    await page.locator('[data-test="photos"] input').set_input_files(
        {"name": "seal.png", "mimeType": "image/png", "buffer": image_bytes("PNG")})
    await admin.check_screen(page, "equipment-inspect")
    await page.get_by_role("button", name="提交巡检").click()
    await expect(page.locator('[data-test="saved"]')).to_contain_text("有问题，设备已标为故障")
    await page.get_by_role("button", name="转报修").click()
    await page.get_by_role("button", name="查看工单").click()
    await expect(page.locator('[data-test="state"]')).to_be_visible()

    [item] = (await api_client.get(f"/api/communities/{c.id}/equipment?state=faulty",
                                   token=c.tokens["manager"])).body
    assert (item["tag_code"], item["overdue"]) == ("E1", False)
    [record] = (await api_client.get(f"/api/communities/{c.id}/equipment/{item['id']}/inspections",
                                     token=c.tokens["manager"])).body
    assert (record["by"], record["answers"]["seal_intact"], len(record["photos"])) == \
        (c.staff["security"], "problem", 1)
    assert record["device"].startswith("phone-") and record["ticket_id"]
    ticket = (await api_client.get(f"/api/communities/{c.id}/tickets/{record['ticket_id']}",
                                   token=c.tokens["manager"])).body
    assert "1单元灭火器" in ticket["description"] and len(ticket["photos"]) == 1


async def test_the_office_registers_filters_and_repairs(app, admin, api_client):
    c = await make_community(app, "eb")
    await register(app, c, 20, kind="pump", name="消防泵", tag_code="P1")
    page = await register_screen(admin, "eb-manager")
    await page.get_by_role("button", name="登记设备").click()
    await page.locator("#eq-kind").select_option("hydrant")
    await page.get_by_label("名称").fill("2号楼消火栓")
    await page.get_by_label("标签编号").fill("H2")
    await page.get_by_label("位置").fill("1-1")
    await admin.check_screen(page, "equipment-register")
    await page.get_by_role("button", name="登记", exact=True).click()
    await expect(page.get_by_role("heading", name="2号楼消火栓")).to_be_visible()
    await expect(page.get_by_text("每 30 天")).to_be_visible()
    await expect(page.locator('[data-test="state"]')).to_contain_text("在用")
    await expect(page.get_by_role("button", name="扫码巡检")).to_be_visible()  # managers inspect too

    await page.get_by_role("button", name="返回").click()
    sheet = "类型,名称,标签编号,位置\n烟感,1单元烟感,S1,1-1\n烤箱,烤箱,T1,\n".encode()
    await page.locator('[data-test="import"]').set_input_files(
        {"name": "台账.csv", "mimeType": "text/csv", "buffer": sheet})
    await expect(page.locator('[data-test="imported"]')).to_have_text("新增 1 台，已有 0 台，1 行有误")
    await expect(page.get_by_text("第 3 行 类型：")).to_be_visible()
    await expect(page.locator('[data-item="S1"]')).to_be_visible()
    await page.get_by_role("button", name="打印设备二维码").click()
    tag = page.locator('.tag[data-code="S1"]')
    await expect(tag).to_contain_text("1单元烟感")
    await expect(tag).to_contain_text("编号 S1")
    await expect(page.locator(".tag")).to_have_count(3)  # H2, P1, S1
    assert decode_qr(await tag.locator("img").screenshot()) == "XQEQ:S1"
    await admin.check_screen(page, "equipment-sheet")
    await page.emulate_media(media="print")
    await expect(page.get_by_role("button", name="打印")).to_be_hidden()
    await expect(tag).to_be_visible()
    await page.emulate_media(media="screen")
    await page.get_by_role("button", name="返回").click()
    await page.locator('[data-test="filter-kind"]').select_option("pump")
    await expect(page.locator(".items [data-item]")).to_have_count(1)
    await expect(page.locator('[data-item="P1"]')).to_contain_text("逾期 13 天")

    # A guard found a problem at the pump; the office sees it faulty and puts it right.
    found = await api_client.post(f"/api/communities/{c.id}/equipment/inspections", {
        "code": "P1", "device": "guard-phone", "scanned_at": app.clock.now().isoformat(),
        "answers": {"no_leak": "problem"}, "note": "漏水"}, token=c.tokens["security"])
    assert found.status == 201, found.body
    await page.locator('[data-test="filter-state"]').select_option("faulty")
    await page.locator('[data-item="P1"]').click()
    await expect(page.locator('[data-test="state"]')).to_contain_text("故障")
    await expect(page.locator('[data-inspection="problem"]')).to_contain_text("无渗漏：漏水")
    await expect(page.locator('[data-inspection="problem"]')).to_contain_text("security")  # who
    await admin.check_screen(page, "equipment-detail")
    await page.get_by_role("button", name="修复").click()
    await page.get_by_role("dialog").get_by_label("维修内容").fill("更换密封圈")
    await page.get_by_role("button", name="确定").click()
    await expect(page.locator('[data-test="state"]')).to_contain_text("在用")
    await expect(page.locator(".van-steps")).to_contain_text("修复")

    # Refilled: the office moves its valid-until date and makes it weekly.
    await page.get_by_role("button", name="修改信息").click()
    await page.get_by_label("有效期至").fill("2027-12-31")
    await page.get_by_label("巡检周期（天）").fill("7")
    await admin.check_screen(page, "equipment-edit")
    await page.get_by_role("button", name="保存").click()
    await expect(page.get_by_text("每 7 天")).to_be_visible()
    await expect(page.get_by_text("2027-12-31")).to_be_visible()
    await expect(page.locator(".van-steps")).to_contain_text("修改")

    await page.goto(admin.base_url + "/admin/kpi")
    await expect(page.locator('[data-kpi="inspection_coverage"] .figure')).to_have_text("33.3%")  # the pump of 3 items
    await expect(page.locator('[data-kpi="equipment_overdue"] .figure')).to_have_text("0")
    await expect(page.locator('[data-kpi="equipment_open_findings"]')).to_contain_text("目标 ≤ 0 台")


async def test_a_guard_scans_a_printed_tag_and_gets_its_inspect_form(app, camera):
    c = await make_community(app, "ed")
    await register(app, c, 1, kind="fire_extinguisher", name="1单元灭火器", tag_code="E1", place_path="1-1")
    page = await camera.open()
    await page.context.grant_permissions(["camera"])
    await camera.sign_in(page, "ed-security")
    await page.goto(camera.base_url + "/admin/equipment/inspect")
    await page.get_by_role("button", name="扫码").click()
    await expect(page.locator('[data-test="inspected-item"]')).to_contain_text("1单元灭火器")
    await expect(page.get_by_label("标签编号")).to_have_value("E1")
    await expect(page.locator('[data-check="seal_intact"]')).to_be_visible()
    await page.get_by_role("button", name="提交巡检").click()
    await expect(page.locator('[data-test="saved"]')).to_contain_text("已记录：正常")


async def test_a_guard_reads_an_items_nfc_sticker_and_inspects_it(app, admin, api_client):
    c = await make_community(app, "en")
    item = await register(app, c, 1, kind="fire_extinguisher", name="2单元灭火器", tag_code="E2", place_path="1-1")
    page = await admin.open()
    await page.add_init_script(nfc_reader(tag_payload(TAG_PREFIX, "E2")))
    await admin.sign_in(page, "en-security")
    await page.goto(admin.base_url + "/admin/equipment/inspect")
    await admin.check_screen(page, "equipment-inspect-nfc")  # three buttons still fit
    await page.get_by_role("button", name="读取NFC").click()
    await expect(page.locator('[data-test="inspected-item"]')).to_contain_text("2单元灭火器")
    await page.get_by_role("button", name="提交巡检").click()
    await expect(page.locator('[data-test="saved"]')).to_contain_text("已记录：正常")
    [record] = (await api_client.get(f"/api/communities/{c.id}/equipment/{item['_id']!s}/inspections",
                                     token=c.tokens["manager"])).body
    assert record["by"] == c.staff["security"]


async def test_one_phone_is_one_device_for_a_patrol_check_in_and_an_inspection(app, admin, api_client):
    p = await set_up(app, api_client, "ev", datetime.now(UTC) - timedelta(minutes=5))
    item = await register(app, p.c, 1, kind="pump", name="生活水泵", tag_code="P1")
    page = await admin.open()
    await admin.sign_in(page, "ev-security")
    await page.goto(admin.base_url + "/admin/patrol-check-in")
    await expect(page.locator(".round-progress")).to_contain_text("下一个：北门（A1）")
    await page.locator("#checkpoint-code").fill("A1")
    await page.get_by_role("button", name="确定").click()
    await page.get_by_role("button", name="提交打卡").click()
    await expect(page.locator("[data-test=sent]")).to_contain_text("已打卡：北门")
    await page.goto(admin.base_url + "/admin/equipment/inspect")
    await page.get_by_label("标签编号").fill("P1")
    await page.get_by_role("button", name="查找").click()
    await page.get_by_role("button", name="提交巡检").click()
    await expect(page.locator('[data-test="saved"]')).to_contain_text("已记录：正常")

    [visit] = (await api_client.get(f"{p.base}/patrol-plans/{p.plan}/rounds",
                                    token=p.c.tokens["manager"])).body[0]["visits"]
    [record] = (await api_client.get(f"{p.base}/equipment/{item['_id']!s}/inspections",
                                     token=p.c.tokens["manager"])).body
    assert visit["device"].startswith("phone-") and record["device"] == visit["device"]


async def test_staff_who_only_read_see_the_register_but_not_its_controls(app, admin):
    c = await make_community(app, "ec")
    await register(app, c, 1, kind="gate", name="北门道闸", tag_code="G1")
    page = await register_screen(admin, "ec-customer-service")
    await expect(page.locator('[data-item="G1"]')).to_be_visible()
    await expect(page.get_by_role("button", name="扫码巡检")).to_have_count(0)
    await expect(page.get_by_role("button", name="登记设备")).to_have_count(0)
