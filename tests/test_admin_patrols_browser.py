"""Patrol screens in Chromium: set-up (checkpoints with checklists, a route in order, a plan),
the printable QR sheet, and the guard's check-in — by typing the number, with the server's
refusals shown, and by scanning the tag with the phone camera (a fake camera playing a video
of the checkpoint's QR code) or by reading its NFC sticker — with the problem found turned
into a repair ticket; the late and missed alarms on Today and the guard console."""


import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from playwright.async_api import expect

from models.check_ins import tag_payload
from models.patrols import TAG_PREFIX
from tests.browser import camera_chromium, decode_qr, nfc_reader
from tests.builders import make_community
from tests.patrol_support import set_up

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def camera_endpoint(tmp_path_factory):
    """A Chromium whose camera shows checkpoint A2's tag."""
    with camera_chromium(tmp_path_factory.mktemp("camera") / "a2.y4m",
                         tag_payload(TAG_PREFIX, "A2")) as endpoint:
        yield endpoint


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), "orange").save(out, "PNG")
    return out.getvalue()


async def guard_page(admin, p, who="security", init_script=None):
    """The guard signed in on the check-in screen, the phone's position known (with
    `init_script` run in the page before its own scripts)."""
    page = await admin.open()
    if init_script:
        await page.add_init_script(init_script)
        await page.reload()
    await page.context.grant_permissions(["geolocation", "camera"])
    await page.context.set_geolocation({"latitude": 31.23, "longitude": 121.47, "accuracy": 8})
    await admin.sign_in(page, f"{p.c.code}-{who}")
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("巡更打卡").click()
    await expect(page.locator(".round-progress")).to_contain_text("本轮进度")
    return page


async def type_code(page, code):
    await page.locator("#checkpoint-code").fill(code)
    await page.get_by_role("button", name="确定").click()


async def rounds(p, plan_id):
    return (await p.http.get(f"{p.base}/patrol-plans/{plan_id}/rounds", token=p.c.tokens["manager"])).body


async def test_check_in_by_typing_the_number_and_the_refusals(app, admin, api_client):
    now = datetime.now(UTC)
    p = await set_up(app, api_client, "pb", now - timedelta(minutes=5))
    closed = await p.add_plan(now - timedelta(minutes=90), name="已过时段")
    page = await guard_page(admin, p)
    await expect(page.locator(".round-progress")).to_contain_text("本轮进度 0/3下一个：北门（A1）")
    await expect(page.get_by_role("button", name="扫码打卡")).to_be_visible()
    await expect(page.get_by_role("button", name="读取NFC")).to_have_count(0)  # no Web NFC here

    await type_code(page, "A1")
    await expect(page.locator(".checklist")).to_contain_text("已识别巡更点：北门（A1）")
    await admin.check_screen(page, "patrol-check-in-answer")
    await page.get_by_role("button", name="提交打卡").click()
    await expect(page.locator("[data-test=sent]")).to_contain_text("已打卡：北门")
    await expect(page.locator("[data-test=sent]")).to_contain_text("已记录位置")
    [visit] = (await rounds(p, p.plan))[0]["visits"]
    assert visit["device"].startswith("phone-") and visit["location"]["latitude"] == 31.23
    assert visit["answers"] == {"lights": "ok", "locks": "ok"}

    await type_code(page, "A3")  # A2 comes first
    await page.get_by_role("button", name="提交打卡").click()
    await expect(page.locator("[data-test=refusal]")).to_have_text("顺序不对，应先到：1 栋大堂（A2）")
    await admin.check_screen(page, "patrol-check-in-refused")
    await page.get_by_role("button", name="取消").click()
    await type_code(page, "ZZ")
    await expect(page.locator("[data-test=refusal]")).to_have_text("不是本小区的巡更点二维码")

    await page.locator(".plan-select").select_option(label="已过时段")
    await expect(page.locator(".round-progress")).to_contain_text("当前没有进行中的巡更")
    await type_code(page, "A1")
    await page.get_by_role("button", name="提交打卡").click()
    await expect(page.locator("[data-test=refusal]")).to_have_text("现在不在巡更时段内")
    assert (await rounds(p, closed)) == []

    await page.reload()  # the same phone: the same device id
    await expect(page.locator(".round-progress")).to_contain_text("下一个：1 栋大堂（A2）")
    await type_code(page, "a2")
    await page.get_by_role("button", name="提交打卡").click()
    await expect(page.locator("[data-test=sent]")).to_contain_text("已打卡：1 栋大堂")
    first, second = (await rounds(p, p.plan))[0]["visits"]
    assert second["device"] == first["device"]


async def test_check_in_by_scanning_the_tag_with_the_camera(app, camera, api_client):
    p = await set_up(app, api_client, "pc", datetime.now(UTC) - timedelta(minutes=5))
    assert (await p.check_in(p.plan, "A1")).status == 201  # A2, on the camera, is next
    page = await guard_page(camera, p)
    await expect(page.locator(".round-progress")).to_contain_text("下一个：1 栋大堂（A2）")
    await page.get_by_role("button", name="扫码打卡").click()
    await expect(page.locator(".checklist")).to_contain_text("已识别巡更点：1 栋大堂（A2）")
    await page.get_by_role("radiogroup", name="lights").get_by_role("radio", name="有问题").click()
    await page.locator("#visit-note").fill("大堂灯不亮")
    await page.get_by_label("照片").set_input_files(files=[{
        "name": "lamp.png", "mimeType": "image/png", "buffer": png()}])
    await page.get_by_role("button", name="提交打卡").click()
    await expect(page.locator("[data-test=sent]")).to_contain_text("已打卡：1 栋大堂")

    visit = (await rounds(p, p.plan))[0]["visits"][1]
    assert (visit["answers"], visit["note"], visit["problem"]) == \
        ({"lights": "problem", "locks": "ok"}, "大堂灯不亮", True)
    assert visit["by"] == p.c.staff["security"] and visit["location"]["longitude"] == 121.47
    assert len(visit["photos"]) == 1

    await page.get_by_role("button", name="报修").click()
    await expect(page.locator("[data-test=ticket-link]")).to_be_visible()
    visit = (await rounds(p, p.plan))[0]["visits"][1]
    ticket = (await p.http.get(f"{p.base}/tickets/{visit['ticket_id']}",
                               token=p.c.tokens["customer_service"])).body
    assert (ticket["place_path"], ticket["channel"], len(ticket["photos"])) == ("1-1", "patrol", 1)
    await camera.check_screen(page, "patrol-check-in-scanned")


async def test_check_in_by_reading_the_nfc_tag(app, admin, api_client):
    p = await set_up(app, api_client, "pn", datetime.now(UTC) - timedelta(minutes=5))
    assert (await p.check_in(p.plan, "A1")).status == 201  # A2, on the sticker, is next
    page = await guard_page(admin, p, init_script=nfc_reader(tag_payload(TAG_PREFIX, "A2")))
    await page.get_by_role("button", name="读取NFC").click()
    await expect(page.locator(".checklist")).to_contain_text("已识别巡更点：1 栋大堂（A2）")
    assert await page.evaluate("() => window.nfcSignal.aborted")  # read once, then stopped
    await page.get_by_role("button", name="提交打卡").click()
    await expect(page.locator("[data-test=sent]")).to_contain_text("已打卡：1 栋大堂")
    first, second = (await rounds(p, p.plan))[0]["visits"]
    [checkpoint] = [c for c in (await p.http.get(f"{p.base}/patrol-checkpoints", token=p.c.tokens["manager"])).body
                    if c["code"] == "A2"]
    assert second["checkpoint_id"] == checkpoint["id"] and second["by"] == p.c.staff["security"]


async def test_a_refused_nfc_read_says_so(app, admin, api_client):
    p = await set_up(app, api_client, "pd", datetime.now(UTC) - timedelta(minutes=5))
    page = await guard_page(admin, p, init_script=nfc_reader(refusal="NotAllowedError"))
    await page.get_by_role("button", name="读取NFC").click()
    await expect(page.locator(".scanner [role=alert]")).to_have_text(
        "未允许使用NFC，请在浏览器设置中允许，或输入编号")
    await admin.check_screen(page, "patrol-nfc-refused")
    reading = page.get_by_role("dialog", name="读取NFC")
    await reading.get_by_role("button", name="取消").click()
    await expect(reading).to_be_hidden()
    await type_code(page, "A1")  # typing still works
    await expect(page.locator(".checklist")).to_contain_text("已识别巡更点：北门（A1）")
    assert not any(r["visits"] for r in await rounds(p, p.plan))


async def test_set_up_checkpoints_routes_plans_and_print_the_tags(app, admin, api_client):
    c = await make_community(app, "ps")
    page = await admin.open()
    await admin.sign_in(page, "ps-security-lead")
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("巡更管理").click()
    await page.get_by_role("tab", name="巡更点").click()
    for code, name, place, items in (("N1", "北门岗亭", "", "灯光\n门锁"), ("N2", "地库入口", "1-1", "消防通道")):
        await page.get_by_role("button", name="添加巡更点").click()
        await page.locator("#cp-code").fill(code)
        await page.locator("#cp-name").fill(name)
        await page.locator("#cp-place").fill(place)
        await page.locator("#cp-checklist").fill(items)
        await page.get_by_role("button", name="保存").click()
        await expect(page.locator(".checkpoint-row").filter(has_text=name)).to_be_visible()
    await expect(page.locator(".checkpoint-row").filter(has_text="北门岗亭")).to_contain_text("灯光、门锁")
    await admin.check_screen(page, "patrol-checkpoints")

    await page.get_by_role("tab", name="路线").click()
    await page.get_by_role("button", name="添加路线").click()
    await page.locator("#route-name").fill("夜巡")
    await page.locator(".route-pick").filter(has_text="地库入口").click()
    await page.locator(".route-pick").filter(has_text="北门岗亭").click()
    await page.get_by_role("button", name="保存").click()
    await expect(page.locator(".route-row")).to_contain_text("地库入口 → 北门岗亭")

    await page.get_by_role("tab", name="计划", exact=True).click()
    await page.get_by_role("button", name="添加计划").click()
    await page.locator("#plan-name").fill("夜间每两小时")
    await page.locator("#plan-route").select_option(label="夜巡")
    await page.locator("#plan-late").fill("15")
    await page.get_by_role("button", name="保存").click()
    await expect(page.locator(".plan-row")).to_contain_text("每 120 分钟 · 时段 60 分钟 · 保安")
    await admin.check_screen(page, "patrol-plans")
    base = f"/api/communities/{c.id}"
    [plan] = (await api_client.get(f"{base}/patrol-plans", token=c.tokens["manager"])).body
    assert (plan["late_after_minutes"], plan["assignee"]["role"], plan["starts_at"][11:16]) == \
        (15, "security", "00:00")  # 08:00 in China

    await page.get_by_role("tab", name="巡更点").click()
    await page.get_by_role("button", name="打印巡更点二维码").click()
    tag = page.locator('.tag[data-code="N2"]')
    await expect(tag).to_contain_text("地库入口")
    await expect(tag).to_contain_text("编号 N2")
    assert decode_qr(await tag.locator("img").screenshot()) == "XQCP:N2"
    await admin.check_screen(page, "patrol-sheet")
    await page.emulate_media(media="print")
    await expect(page.get_by_role("button", name="打印")).to_be_hidden()
    await expect(page.locator(".van-tabbar")).to_be_hidden()
    await expect(tag).to_be_visible()


async def test_late_and_missed_rounds_alarm_on_today_and_the_guard_console(app, admin, api_client):
    now = datetime.now(UTC)
    p = await set_up(app, api_client, "pa", now - timedelta(minutes=30), late_after_minutes=10,
                     name="大门巡更")
    page = await admin.open()
    await admin.sign_in(page, "pa-security")
    await expect(page.locator(".today")).to_be_visible()
    await app.patrols.sweep(app.clock.now())  # the sweeper's pass: the round is 20 min late
    alarm = page.locator('.patrol-alarm[data-alarm="late"]')
    await expect(alarm).to_contain_text("巡更迟到")  # live, from the feed
    await expect(alarm).to_contain_text("大门巡更")
    await admin.check_screen(page, "today-patrol-late")
    await page.get_by_role("tab", name="门禁").click()
    await page.get_by_role("tab", name="巡更").click()
    await expect(page.locator('.patrol-alarm[data-alarm="late"]')).to_contain_text("已巡 0/3")
    await admin.check_screen(page, "gates-patrol-alarms")


async def test_a_plans_rounds_show_the_visits_and_turn_a_problem_into_a_ticket(app, admin, api_client):
    p = await set_up(app, api_client, "pr", datetime.now(UTC) - timedelta(minutes=5))
    assert (await p.check_in(p.plan, "A1")).status == 201
    assert (await p.check_in(p.plan, "A2", answers={"locks": "problem"}, note="门锁松动")).status == 201
    page = await admin.open()
    await admin.sign_in(page, "pr-manager")
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("巡更管理").click()
    await page.locator(".plan-row").filter(has_text="每 2 小时").click()
    visits = page.locator(".visit")
    await expect(visits).to_have_count(2)
    await expect(visits.nth(1)).to_contain_text("2. 1 栋大堂")
    await expect(visits.nth(1)).to_contain_text("有问题：locks · 门锁松动")
    await admin.check_screen(page, "patrol-plan-rounds")
    await visits.nth(1).get_by_role("button", name="报修").click()
    await expect(visits.nth(1).get_by_role("button", name="报修单")).to_be_visible()
    ticket_id = (await rounds(p, p.plan))[0]["visits"][1]["ticket_id"]
    await visits.nth(1).get_by_role("button", name="报修单").click()
    await expect(page).to_have_url(re.compile(f"/tickets/{ticket_id}$"))
