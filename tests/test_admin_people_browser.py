"""The People screen in Chromium: binding requests, who lives where, worker passes, walk-ins."""

from datetime import UTC, datetime, timedelta, timezone
from datetime import time as dtime

import pytest
from playwright.async_api import expect

from gate_bridge.passes import WEEKDAYS
from tests.browser import decode_qr
from tests.builders import make_community, make_resident

pytestmark = pytest.mark.asyncio
TOKYO = timezone(timedelta(hours=9))


async def binding_request(app, c, openid, name, room, relation="owner"):
    resident = await app.residents.from_wechat(openid, None, None)
    await app.db.residents.update_one({"_id": resident["_id"]}, {"$set": {"name": name}})
    return await app.bindings.request(str(resident["_id"]), c.id, room, relation, None,
                                      "新搬来")


async def test_customer_service_approves_and_rejects_binding_requests(app, admin, api_client):
    c = await make_community(app, "pb")
    wang = await binding_request(app, c, "o-wang", "王芳", "1-1-102")
    li = await binding_request(app, c, "o-li", "李雷", "1-2-101")
    page = await admin.open()
    await admin.sign_in(page, "pb-customer-service")
    await page.locator(".van-tabbar").get_by_role("tab", name="住户").click()
    first = page.locator(f'[data-binding="{wang["_id"]}"]')
    await expect(first.get_by_text("王芳")).to_be_visible()
    await expect(first.get_by_text("1-1-102")).to_be_visible()
    await admin.check_screen(page, "people-bindings")

    await first.get_by_role("button", name="通过").click()
    await expect(page.get_by_role("status")).to_have_text("已通过：1-1-102")
    await expect(first).to_have_count(0)

    second = page.locator(f'[data-binding="{li["_id"]}"]')
    await second.get_by_role("button", name="拒绝").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_role("button", name="拒绝").click()
    await expect(dialog.get_by_text("请填写原因")).to_be_visible()  # no reason, not sent
    await dialog.get_by_label("原因").fill("房号不符")
    await dialog.get_by_role("button", name="拒绝").click()
    await expect(page.get_by_role("status")).to_have_text("已拒绝：1-2-101")

    decided = (await api_client.get(f"/api/communities/{c.id}/bindings",
                                    token=c.tokens["manager"])).body
    assert {(b["room_path"], b["state"], b["reason"]) for b in decided} == {
        ("1-1-102", "approved", None), ("1-2-101", "rejected", "房号不符")}

    # Who lives where now, on the residents tab.
    await page.get_by_role("tablist").first.get_by_role("tab", name="住户名单").click()
    await expect(page.get_by_text("王芳")).to_be_visible()
    await expect(page.get_by_text("业主")).to_be_visible()
    await admin.check_screen(page, "people-residents")


async def test_walk_in_pass_shows_a_qr_that_decodes_to_its_token(app, admin, api_client):
    c = await make_community(app, "pw")
    page = await admin.open()
    await admin.sign_in(page, "pw-security")
    await page.locator(".van-tabbar").get_by_role("tab", name="住户").click()
    tabs = page.get_by_role("tablist").first
    await expect(tabs.get_by_role("tab", name="绑定申请")).to_have_count(0)  # not a guard's
    await tabs.get_by_role("tab", name="访客登记").click()
    await page.get_by_label("姓名").fill("赵六")
    await page.get_by_label("房号").fill("1-1-101")
    await page.get_by_label("事由").fill("送快递")
    await admin.check_screen(page, "people-walkin-form")
    await page.get_by_role("button", name="登记并生成通行码").click()

    qr = page.get_by_role("img", name="访客通行二维码")
    await expect(qr).to_be_visible()
    await page.wait_for_function("document.querySelector('.pass-qr').complete")
    [issued] = (await api_client.get(f"/api/communities/{c.id}/passes?kind=visitor",
                                     token=c.tokens["security"])).body
    assert (issued["origin"], issued["visitor"]["name"], issued["room_path"]) == \
        ("walkin", "赵六", "1-1-101")
    assert decode_qr(await qr.screenshot()) == issued["token"]
    await admin.check_screen(page, "people-walkin-pass")

    # Printed, only the pass shows.
    await page.emulate_media(media="print")
    hidden = await page.evaluate("getComputedStyle(document.querySelector('.van-nav-bar')).visibility")
    shown = await page.evaluate("getComputedStyle(document.querySelector('.pass-qr')).visibility")
    assert (hidden, shown) == ("hidden", "visible")
    await page.emulate_media(media="screen")
    # The pass works at the gate it lists.
    gate = await app.places.gate(c.id, c.gates["main"])
    decision = await app.gate_access.check(issued["token"], gate, "in", "scanner")
    assert decision.allow, decision


async def test_worker_pass_issued_used_and_cancelled(app, admin, api_client):
    c = await make_community(app, "pk")
    # Not China's clock: the pass's dates and hours follow the community's own time zone.
    await app.places.update_community(c.id, {"time_zone": "Asia/Tokyo"})
    page = await admin.open()
    await admin.sign_in(page, "pk-customer-service")
    await page.locator(".van-tabbar").get_by_role("tab", name="住户").click()
    await page.get_by_role("tablist").first.get_by_role("tab", name="工人证").click()
    await page.get_by_role("button", name="办理工人证").click()
    form = page.get_by_role("dialog", name="办理工人证")
    await form.get_by_label("姓名").fill("钱师傅")
    await form.get_by_label("单位").fill("好家装修")
    await form.get_by_label("事由").fill("1-1-101 装修")
    await form.get_by_label("审批单号").fill("ZX-2026-17")
    await form.get_by_text("main").click()
    # Daily hours around now (local time), so the pass works while the test runs.
    now = app.clock.now().astimezone(TOKYO)
    start = (now - timedelta(hours=1)).replace(minute=0)
    await form.get_by_label("每日开始").fill(start.strftime("%H:00"))
    await form.get_by_label("每日结束").fill((start + timedelta(hours=4)).strftime("%H:00"))
    tomorrow = now.weekday() + 1
    await form.locator(".days").get_by_text("一二三四五六日"[tomorrow % 7], exact=True).click()
    await admin.check_screen(page, "people-worker-form")
    await form.get_by_role("button", name="办理", exact=True).click()
    row = page.locator(".worker-pass", has_text="钱师傅")
    await expect(row).to_be_visible()
    [made] = (await api_client.get(f"/api/communities/{c.id}/passes?kind=worker",
                                   token=c.tokens["manager"])).body
    assert (made["visitor"]["company"], made["approval_ref"], made["gates"]) == \
        ("好家装修", "ZX-2026-17", ["main"])
    days = [d for i, d in enumerate(WEEKDAYS) if i != tomorrow % 7]
    assert made["days"] == days  # every day but tomorrow (so it works today)
    # From today's midnight to the day's end, on the community's clock.
    since, until = (datetime.fromisoformat(made[key]).astimezone(TOKYO)
                    for key in ("valid_from", "valid_to"))
    assert (since.date(), since.time(), until.date(), until.time()) == \
        (now.date(), dtime(0), now.date(), dtime(23, 59, 59))

    gate = await app.places.gate(c.id, c.gates["main"])
    assert (await app.gate_access.check(made["token"], gate, "in", "scanner")).allow
    await row.click()
    detail = page.locator(".pass-detail").first
    await expect(detail.get_by_text("通行 · main · 放行")).to_be_visible()  # its use
    await expect(detail.get_by_text("次数不限")).to_be_visible()
    await expect(detail.locator(".pass-days")).to_contain_text(
        " ".join("一二三四五六日"[WEEKDAYS.index(d)] for d in days))
    await admin.check_screen(page, "people-worker-pass")
    await detail.get_by_role("button", name="作废此证").click()
    dialog = page.locator(".van-dialog")
    await dialog.get_by_label("原因").fill("工期结束")
    await dialog.get_by_role("button", name="确定").click()
    await expect(detail.get_by_role("heading")).to_have_text("钱师傅 · 已取消")
    after = (await api_client.get(f"/api/communities/{c.id}/passes/{made['id']}",
                                  token=c.tokens["manager"])).body
    assert after["state"] == "cancelled" and after["trail"][-1]["reason"] == "工期结束"
    assert not (await app.gate_access.check(made["token"], gate, "in", "scanner")).allow


async def test_maintenance_never_sees_people_and_the_server_refuses(app, admin, api_client):
    c = await make_community(app, "pm")
    pending = await binding_request(app, c, "o-zhou", "周", "1-1-102")
    _, _ = await make_resident(app, c, "wu", "1-1-101")
    page = await admin.open()
    await admin.sign_in(page, "pm-maintenance")
    await expect(page.get_by_role("tab", name="更多")).to_be_visible()
    await expect(page.locator(".van-tabbar").get_by_role("tab", name="住户")).to_have_count(0)
    await page.goto(admin.base_url + "/admin/people")
    await expect(page).to_have_url(admin.base_url + "/admin/more")
    token = c.tokens["maintenance"]
    base = f"/api/communities/{c.id}"
    refused = [await api_client.post(f"{base}/bindings/{pending['_id']}/decision",
                                     {"action": "approve"}, token=token),
               await api_client.get(f"{base}/occupants", token=token),
               await api_client.post(f"{base}/passes/walkins",
                                     {"name": "x", "purpose": "y", "room_path": "1-1-101"},
                                     token=token)]
    assert [r.status for r in refused] == [403, 403, 403]
    assert (await app.db.room_links.find_one({"_id": pending["_id"]}))["state"] == "pending"
    assert datetime.now(UTC)  # the real clock ran throughout
