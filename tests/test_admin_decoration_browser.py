"""The decoration permit screens in Chromium: the office approves with hours, days and a
deposit, inspects with a checklist and a photo, suspends (the worker's pass is refused at the
gate) and resumes, and accepts; a role without those steps sees no buttons for them."""

from datetime import UTC, datetime, time, timedelta

import pytest
from bson import ObjectId
from playwright.async_api import expect

from models.common import ManualClock
from models.decoration import FORBIDDEN_WORKS
from tests.builders import make_community, make_resident
from tests.test_photos import image_bytes, multipart
from tests.tickets_support import settings  # noqa: F401 (tokens outliving the clock's moves)

pytestmark = pytest.mark.asyncio
# Today at 10:00 China time, inside the working hours: near the real clock (sessions expire by it).
START = datetime.combine(datetime.now(UTC).date(), time(2, 0), UTC)
DAYS = "一二三四五六日"


@pytest.fixture
def clock():
    return ManualClock(START)


async def application(app, api_client, code):
    """A community with one application by the owner of 1-1-101, a drawing attached."""
    c = await make_community(app, code)
    _, owner = await make_resident(app, c, f"{code}-ann", "1-1-101")
    base = f"/api/communities/{c.id}/decoration-permits"
    reply = await api_client.post(base, {
        "room_path": "1-1-101", "start": START.isoformat(), "end": (START + timedelta(days=20)).isoformat(),
        "company": "好家装修", "manager_phone": "13900000000", "scope": "厨房、卫生间翻新",
        "workers": [{"name": "张师傅", "id_last4": "123X", "phone": "13800000001"}],
        "acknowledged": list(FORBIDDEN_WORKS)}, token=owner)
    assert reply.status == 201, reply.body
    body, headers = multipart(image_bytes("PNG"))
    drawing = await api_client.call("POST", f"{base}/{reply.body['id']}/photos", raw=body,
                                    headers=headers, token=owner)
    assert drawing.status == 201, drawing.body
    return c, reply.body["id"]


async def active_token(app, c, permit_id):
    permit = await app.db.decoration_permits.find_one({"_id": ObjectId(permit_id)})
    [entry] = [p for p in permit["passes"] if p["active"]]
    return (await app.db.passes.find_one({"_id": ObjectId(entry["id"])}))["token"]


async def test_approve_inspect_suspend_resume_and_accept(app, admin, api_client):
    c, permit_id = await application(app, api_client, "dz")
    gate = await app.places.gate(c.id, c.gates["main"])
    page = await admin.open()
    await admin.sign_in(page, "dz-customer-service")
    await expect(page.locator('[data-test="permits-waiting"]')).to_have_text("1")
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("装修管理").click()
    row = page.locator('[data-room="1-1-101"]')
    await expect(row).to_contain_text("待审批")
    await admin.check_screen(page, "permits")
    await row.click()
    state = page.locator('[data-test="state"]')
    await expect(state).to_contain_text("待审批")
    await expect(page.locator(".drawings img")).to_have_count(1)
    await expect(page.get_by_text("不移动燃气管道")).to_be_visible()
    await expect(page.locator('[data-worker="张师傅"]')).to_contain_text("未发证")
    await admin.check_screen(page, "permit-submitted")

    await page.get_by_role("button", name="批准").click()
    form = page.get_by_role("dialog", name="批准")
    await form.get_by_label("每日开始").fill("08:00")
    await form.get_by_label("每日结束").fill("17:00")
    tomorrow = (START + timedelta(days=1)).weekday()  # 10:00 in China: the same day there
    await form.locator(".days").get_by_text(DAYS[tomorrow], exact=True).click()
    await form.get_by_label("押金（元）").fill("2000")
    await admin.check_screen(page, "permit-approve")
    await form.get_by_role("button", name="提交").click()
    await expect(form).to_be_hidden()
    await expect(state).to_contain_text("施工中")
    await expect(page.get_by_role("status")).to_have_text("已完成：批准")
    days = " ".join(d for i, d in enumerate(DAYS) if i != tomorrow)
    await expect(page.locator('[data-test="hours"]')).to_have_text(f"施工时段08:00–17:00 · {days}")
    permit = (await api_client.get(f"/api/communities/{c.id}/decoration-permits/{permit_id}",
                                   token=c.tokens["manager"])).body
    assert (permit["hours"], permit["deposit"], len(permit["days"])) == (["08:00", "17:00"], 2000, 6)

    # The worker comes through the gate; the permit shows the entry.
    token = await active_token(app, c, permit_id)
    assert (await app.gate_access.check(token, gate, "in", "scanner")).allow
    await page.reload()
    entries = page.locator(".entries")
    await expect(entries).to_contain_text("张师傅 · main")
    await expect(entries).to_contain_text("通过 · 正常")
    await expect(page.locator('[data-worker="张师傅"]')).to_contain_text("通行证有效")

    await page.get_by_role("button", name="巡查").click()
    form = page.get_by_role("dialog", name="巡查")
    await form.locator('[data-check="fire_safety"]').get_by_text("正常").click()
    await form.locator('[data-check="structure_untouched"]').get_by_text("有问题").click()
    await form.get_by_label("巡查发现").fill("拆了承重墙一角")
    await form.get_by_role("switch", name="发现违规").click()
    await form.locator("input[type=file]").set_input_files(
        files=[{"name": "site.png", "mimeType": "image/png", "buffer": image_bytes("PNG")}])
    await admin.check_screen(page, "permit-inspect")
    await form.get_by_role("button", name="提交").click()
    await expect(form).to_be_hidden()
    history = page.locator(".history")
    await expect(history).to_contain_text("拆了承重墙一角")
    await expect(history).to_contain_text("结构未改动：有问题")
    await expect(history.locator("img")).to_have_count(1)
    await expect(page.get_by_text("办理记录 · 巡查 1 次")).to_be_visible()

    await page.get_by_role("button", name="停工").click()
    await page.get_by_role("button", name="确定").click()
    await expect(page.get_by_text("请填写原因")).to_be_visible()
    await page.get_by_label("原因").fill("拆改承重墙")
    await page.get_by_role("button", name="确定").click()
    await expect(state).to_contain_text("已停工")
    refused = await app.gate_access.check(token, gate, "in", "scanner")
    assert (refused.allow, refused.reason) == (False, "revoked")
    await expect(page.locator('[data-worker="张师傅"]')).to_contain_text("通行证已停用")

    await page.get_by_role("button", name="复工").click()
    await page.get_by_label("原因").fill("已整改复原")
    await page.get_by_role("button", name="确定").click()
    await expect(state).to_contain_text("施工中")
    assert (await app.gate_access.check(await active_token(app, c, permit_id), gate, "in",
                                        "scanner")).allow

    await page.get_by_role("button", name="验收").click()
    form = page.get_by_role("dialog", name="验收")
    await form.get_by_label("退还押金（元）").fill("2000")
    await form.get_by_label("验收意见").fill("验收合格")
    await form.get_by_role("button", name="提交").click()
    await expect(form).to_be_hidden()
    await expect(state).to_contain_text("已验收")
    await expect(page.get_by_text("当前没有您可以执行的操作")).to_be_visible()
    await admin.check_screen(page, "permit-completed")
    done = (await api_client.get(f"/api/communities/{c.id}/decoration-permits/{permit_id}",
                                 token=c.tokens["manager"])).body
    assert (done["state"], done["deposit_returned"]) == ("completed", 2000)
    assert [h["action"] for h in done["history"]] == [
        "create", "approve", "inspect", "suspend", "resume", "accept"]


async def test_maintenance_sees_the_application_but_not_the_offices_steps(app, admin, api_client):
    c, permit_id = await application(app, api_client, "dm")
    page = await admin.open()
    await admin.sign_in(page, "dm-maintenance")
    await expect(page.locator(".open-tickets")).to_be_visible()
    await expect(page.locator('[data-test="permits-waiting"]')).to_have_count(0)  # not theirs to decide
    await page.goto(f"{admin.base_url}/admin/decoration/{permit_id}")
    await expect(page.locator('[data-test="state"]')).to_contain_text("待审批")
    await expect(page.get_by_text("当前没有您可以执行的操作")).to_be_visible()
    await expect(page.locator("[data-action]")).to_have_count(0)
    reply = await api_client.post(f"/api/communities/{c.id}/decoration-permits/{permit_id}/actions",
                                  {"action": "approve"}, token=c.tokens["maintenance"])
    assert reply.status == 403
    assert (await api_client.post(f"/api/communities/{c.id}/decoration-permits/{permit_id}/actions",
                                  {"action": "approve"}, token=c.tokens["manager"])).status == 200
    await page.reload()  # approved: inspecting and suspending are theirs, the office's are not
    await expect(page.locator('[data-test="state"]')).to_contain_text("施工中")
    actions = page.locator("[data-action]")
    await expect(actions).to_have_count(2)
    assert [await a.get_attribute("data-action") for a in await actions.all()] == ["inspect", "suspend"]
