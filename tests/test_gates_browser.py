"""The Gates screen (guard console) and the access log in Chromium, against simulated bridges
on the in-process hub: levels of a remote open arriving, an offline alarm handled from raise
to close, the log filtered, scrolled and exported, and what a role without the permission
sees (and is refused)."""

import io
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId
from openpyxl import load_workbook
from playwright.async_api import expect

from tests.builders import change_directly, make_community
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import start_sim_bridge
from tests.test_access_log import some_traffic

pytestmark = pytest.mark.asyncio
URUMQI = ZoneInfo("Asia/Urumqi")


async def online_gate(app, hub, tmp_path, code, **options):
    """A community whose main gate's simulated bridge is connected (and fully welcomed)."""
    c = await make_community(app, code)
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"], **options)
    await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
    await hub.wait(lambda: hub.idle)
    return c, creds, sim


async def gates_screen(admin, username):
    page = await admin.open()
    await admin.sign_in(page, username)
    await page.get_by_role("tab", name="门禁").click()
    return page


async def test_a_remote_open_shows_its_levels_as_they_arrive(app, admin, hub, tmp_path):
    # The door is pushed open by hand, so the page shows "received" and "actuated" first.
    c, _, sim = await online_gate(app, hub, tmp_path, "gbo", auto_door=False, door_open_timeout=20)
    try:
        page = await gates_screen(admin, "gbo-security")
        gate = page.locator('[data-gate="main"]')
        await expect(gate.locator(".gate-status")).to_have_text("在线")
        await expect(page.get_by_role("button", name="切换模式 main")).to_have_count(0)  # guards don't
        await admin.check_screen(page, "gates")

        await page.get_by_role("button", name="远程开门 main").click()
        dialog = page.locator(".van-dialog")
        await dialog.get_by_role("button", name="远程开门").click()
        await expect(dialog.get_by_text("请填写开门理由")).to_be_visible()  # a reason is required
        await page.get_by_label("开门理由").fill("快递员没带通行码")
        await dialog.get_by_role("button", name="远程开门").click()

        levels = gate.locator(".levels")
        await expect(levels.locator('li.done[data-level="received"]')).to_be_visible()
        await expect(levels.locator('li.done[data-level="actuated"]')).to_be_visible()
        await expect(levels.locator('li[data-level="result"]')).not_to_have_class("done")
        sim.door.set(True)  # someone walks through
        await expect(levels.locator('li.done[data-level="opened"]')).to_have_text("门已打开")
        await expect(dialog).to_be_hidden()
        await admin.check_screen(page, "gates-open")
    finally:
        await sim.stop()
    [line] = (await app.access_log.query(c.id))["items"]
    assert (line["source"], line["open_reason"], line["by"]) == (
        "remote", "快递员没带通行码", f"staff:{c.staff['security']}")


async def test_an_offline_alarm_is_acknowledged_dispatched_and_closed(app, admin, hub, tmp_path):
    c, creds, sim = await online_gate(app, hub, tmp_path, "gba")
    await change_directly(app, "staff", {"_id": ObjectId(c.staff["security"])},
                          {"$set": {"name": "巡逻王"}})
    page = await gates_screen(admin, "gba-security-lead")
    await expect(page.locator('[data-gate="main"] .gate-status')).to_have_text("在线")
    await page.get_by_role("tab", name="告警").click()
    await expect(page.get_by_text("没有未处理的告警")).to_be_visible()

    await sim.stop()  # the bridge goes away: its alarm arrives live
    alarm = page.locator('[data-alarm="bridge_offline"]')
    await expect(alarm.locator(".alarm-state")).to_have_text("未处理")
    await admin.check_screen(page, "gates-alarms")

    async def note(button: str, text: str) -> None:
        await alarm.get_by_role("button", name=button).click()
        await page.get_by_label("备注").fill(text)
        await page.locator(".van-dialog").get_by_role("button", name="确定").click()

    await note("确认", "看到了")
    await expect(alarm.locator(".alarm-state")).to_have_text("处理中")
    await alarm.get_by_role("button", name="派人").click()
    await page.locator(".van-action-sheet").get_by_text("巡逻王").click()
    await page.get_by_label("备注").fill("去门岗看看网线")
    await page.locator(".van-dialog").get_by_role("button", name="确定").click()
    await expect(alarm.get_by_text("处理人：巡逻王")).to_be_visible()
    await note("关闭", "网线松了，已插好")
    await expect(alarm).to_have_count(0)  # closed alarms are hidden…
    await page.get_by_role("switch", name="显示已关闭").click()
    await expect(alarm.locator(".alarm-state")).to_have_text("已关闭")  # …until asked for
    await page.get_by_role("tab", name="门禁状态").click()
    await expect(page.locator('[data-gate="main"] .gate-status')).to_have_text("离线")
    [doc] = await app.gate_alarms.alarms(c.id)
    assert [h["action"] for h in doc["history"]] == ["acknowledge", "dispatch", "close"]
    assert doc["assignee"]["id"] == c.staff["security"] and creds["bridge_id"] == doc["bridge"]


async def test_the_access_log_filters_scrolls_and_exports(app, admin, api_client):
    c = await make_community(app, "gbl")
    await app.places.update_gate(c.id, c.gates["main"], {"name": "南门"})
    # Far west of China: its clock is UTC+6, and both the page and the export keep to it.
    await change_directly(app, "communities", {"_id": ObjectId(c.id)},
                          {"$set": {"time_zone": "Asia/Urumqi"}})
    await some_traffic(app, api_client, c)  # 张三 twice (once refused), then 李四
    for i in range(55):  # older lines, to scroll through
        await app.access_log.record({
            "community_id": ObjectId(c.id), "gate_id": ObjectId(c.gates["u1-1"]), "direction": "out",
            "result": "allow", "reason": "ok", "source": "gate", "kind": "staff", "pass_id": None,
            "subject": c.staff["maintenance"], "at": app.clock.now() - timedelta(hours=2, minutes=i)})
    page = await admin.open()
    await admin.sign_in(page, "gbl-manager")
    await page.get_by_role("tab", name="更多").click()
    await page.locator(".van-cell", has_text="通行记录").click()
    lines = page.locator(".log-line")
    await expect(lines.first).to_contain_text("李四 · 1栋2单元101室")
    await expect(lines.first).to_contain_text("南门")
    newest = (await app.access_log.query(c.id, limit=1))["items"][0]["at"]
    await expect(lines.first.locator("time")).to_have_text(
        newest.replace(tzinfo=UTC).astimezone(URUMQI).strftime("%m/%d %H:%M"))
    await expect(lines).to_have_count(50)
    await admin.check_screen(page, "access-log")
    await lines.last.scroll_into_view_if_needed()  # the next cursor page comes by itself
    await expect(lines).to_have_count(58)
    await expect(page.get_by_text("没有更多了")).to_be_visible()

    await page.get_by_label("人员").fill("张三")
    await page.get_by_label("原因").select_option(label="码已用过")
    await page.get_by_role("button", name="查询").click()
    await expect(lines).to_have_count(1)
    await expect(lines.first).to_contain_text("张三 · 1栋1单元101室")
    await expect(lines.first).to_contain_text("拒绝")

    await page.get_by_label("原因").select_option(label="全部")
    await page.get_by_role("button", name="查询").click()
    await expect(lines).to_have_count(2)
    async with page.expect_download() as download:
        await page.get_by_role("button", name="导出 Excel").click()
    path = await (await download.value).path()
    sheet = load_workbook(io.BytesIO(path.read_bytes())).active
    header, *rows = list(sheet.values)
    assert header[:5] == ("时间", "门禁", "方向", "结果", "原因")
    assert [(r[header.index("姓名")], r[header.index("房间")], r[header.index("结果")]) for r in rows] == [
        ("张三", "1栋1单元101室", "拒绝"), ("张三", "1栋1单元101室", "通过")]
    local = rows[0][0].replace(tzinfo=URUMQI)
    assert abs(local - app.clock.now()) < timedelta(minutes=1) and rows[0][1] == "南门"


async def test_a_role_without_the_permission_sees_no_controls_and_is_refused(app, admin, api_client,
                                                                            hub, tmp_path):
    c, _, sim = await online_gate(app, hub, tmp_path, "gbm")
    try:
        page = await gates_screen(admin, "gbm-maintenance")
        await expect(page.locator('[data-gate="main"] .gate-status')).to_have_text("在线")
        await expect(page.get_by_role("button", name="远程开门 main")).to_have_count(0)
        await expect(page.get_by_role("button", name="切换模式 main")).to_have_count(0)
        await expect(page.get_by_role("tab", name="告警")).to_have_count(0)
        await admin.check_screen(page, "gates-maintenance")
        await page.get_by_role("tab", name="更多").click()
        await expect(page.locator(".van-cell", has_text="通行记录")).to_have_count(0)

        token = c.tokens["maintenance"]
        base = f"/api/communities/{c.id}"
        gate = f"{base}/gates/{c.gates['main']}"
        assert (await api_client.post(f"{gate}/open", {"reason": "x"}, token=token)).status == 403
        for path in (f"{gate}/mode", f"{base}/mode"):
            refused = await api_client.post(path, {"mode": "locked", "reason": "x"}, token=token)
            assert refused.status == 403
        for path in (f"{base}/alarms", f"{base}/access-log", f"{base}/access-log/export"):
            assert (await api_client.get(path, token=token)).status == 403
        # A guard opens but does not start emergency modes; the server agrees.
        refused = await api_client.post(f"{base}/mode", {"mode": "locked", "reason": "x"},
                                        token=c.tokens["security"])
        assert refused.status == 403
    finally:
        await sim.stop()
    assert sim.relay.pulses == 0
