"""The Settings screen in Chromium: SLA targets, rooms and their import, staff and roles,
gates and bridge provisioning."""

import pytest
from playwright.async_api import expect

from gate_bridge.bridge import load_config
from tests.builders import make_community
from tests.gate_fixtures import hub, start_sim_bridge  # noqa: F401 (fixture)

pytestmark = pytest.mark.asyncio


async def open_settings(admin, username):
    page = await admin.open()
    await admin.sign_in(page, username)
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("设置").click()
    await expect(page.get_by_role("tablist").first).to_be_visible()
    return page


async def test_admin_sets_targets_and_staff_and_provisions_a_bridge_seen_once(
        app, admin, api_client, hub, tmp_path):
    c = await make_community(app, "st")
    page = await open_settings(admin, "st-admin")
    tabs = page.get_by_role("tablist").first
    await expect(page.get_by_label("名称")).to_have_value("Garden st")
    await page.get_by_label("地址").fill("幸福路 8 号")
    # A refusal reads in the office's language: the server's hint for the field, in Chinese.
    await page.get_by_label("时区").fill("Mars/Olympus")
    await page.get_by_role("button", name="保存").click()
    await expect(page.locator(".van-field__error-message")).to_have_text(
        "应为 IANA 时区名，例如 Asia/Shanghai")
    await page.get_by_label("时区").fill("Asia/Urumqi")
    for day in "六日":  # decoration permits: Monday to Friday unless an approval says otherwise
        await page.locator(".days").get_by_text(day, exact=True).click()
    await page.get_by_role("button", name="保存").click()
    await expect(page.get_by_role("status")).to_have_text("已保存")
    community = (await api_client.get(f"/api/communities/{c.id}", token=c.tokens["manager"])).body
    assert (community["address"], community["time_zone"]) == ("幸福路 8 号", "Asia/Urumqi")
    assert community["settings"]["decoration_days"] == ["mon", "tue", "wed", "thu", "fri"]
    await admin.check_screen(page, "settings-community")

    await tabs.get_by_role("tab", name="时限").click()
    await page.get_by_label("加急维修到场").fill("20")
    await page.get_by_role("button", name="保存").click()
    await expect(page.get_by_role("status")).to_have_text("时限已保存")
    targets = (await api_client.get(f"/api/communities/{c.id}/sla-targets",
                                    token=c.tokens["manager"])).body
    assert targets["urgent_minutes"] == 20 and targets["emergency_minutes"] == 5
    await admin.check_screen(page, "settings-sla")

    await tabs.get_by_role("tab", name="员工").click()
    await page.get_by_role("button", name="添加员工").click()
    sheet = page.get_by_role("dialog", name="添加员工")
    await sheet.get_by_label("姓名").fill("孙保安")
    await sheet.get_by_label("用户名").fill("st-sun")
    await sheet.get_by_label("初始密码").fill("a long first password")
    await sheet.get_by_text("保安", exact=True).click()
    await sheet.get_by_role("button", name="添加员工").click()
    await expect(page.get_by_role("status")).to_have_text("已添加 孙保安")
    staff = (await api_client.get(f"/api/communities/{c.id}/staff", token=c.tokens["admin"])).body
    assert {s["username"]: s["roles"] for s in staff}["st-sun"] == ["security"]
    # The only admin cannot drop their own admin role: the server's rule, said in words.
    me = page.locator('[data-staff="st-admin"]')
    await me.get_by_role("button", name="修改角色").click()
    dialog = page.locator(".van-dialog")
    await dialog.get_by_text("管理员").click()
    await dialog.get_by_text("经理").click()
    await dialog.get_by_role("button", name="保存").click()
    await expect(dialog.get_by_role("alert")).to_have_text(
        "小区至少需要一名管理员：请先任命其他管理员")
    await dialog.get_by_role("button", name="取消").click()
    await expect(dialog).to_be_hidden()
    await admin.check_screen(page, "settings-staff")
    # Disabling ends the member's access; enabling gives it back.
    sun = page.locator('[data-staff="st-sun"]')
    await sun.get_by_role("button", name="停用账号").click()
    await expect(sun).to_contain_text("已停用")
    assert (await app.staff.by_username("st-sun")) is None  # no sign-in while disabled
    await sun.get_by_role("button", name="启用账号").click()
    await expect(sun.get_by_role("button", name="停用账号")).to_be_visible()
    assert (await app.staff.by_username("st-sun"))["active"] is True
    # Someone already on another community's staff gets roles here by username alone.
    other = await make_community(app, "st2")
    await page.get_by_role("button", name="添加员工").click()
    await sheet.get_by_label("用户名").fill("st2-maintenance")
    await sheet.get_by_text("维修", exact=True).click()
    await sheet.get_by_role("button", name="添加员工").click()
    await expect(page.locator('[data-staff="st2-maintenance"]')).to_contain_text("维修")
    member = await app.db.staff.find_one({"username": "st2-maintenance"})
    assert member["roles"] == {other.id: ["maintenance"], c.id: ["maintenance"]}

    await tabs.get_by_role("tab", name="门禁").click()
    main = page.locator('[data-gate="main"]')
    await expect(main).to_contain_text("未配置网关")
    await admin.check_screen(page, "settings-gates")
    await main.get_by_role("button", name="配置网关").click()
    config = page.locator(".bridge-config")
    await expect(config).to_contain_text("[bridge]")
    await expect(page.get_by_role("button", name="复制配置")).to_be_in_viewport()  # slid in
    await admin.check_screen(page, "settings-bridge-secret")
    snippet = await config.inner_text()

    # The snippet is a bridge.toml the bridge program reads, with the secret that works.
    (tmp_path / "bridge.toml").write_text(snippet)
    bridge_config, _ = load_config(str(tmp_path / "bridge.toml"))
    gate = (await api_client.get(f"/api/communities/{c.id}/gates/{c.gates['main']}",
                                 token=c.tokens["admin"])).body
    assert bridge_config.bridge_id == gate["bridge_id"]
    assert (bridge_config.host, bridge_config.port, bridge_config.tls) == \
        ("127.0.0.1", app.config.gate_port, False)
    sim = await start_sim_bridge(tmp_path, hub.port, bridge_config.bridge_id, bridge_config.secret)
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        # Once closed, the secret is gone from the page.
        await page.get_by_role("button", name="关闭").click()
        await expect(config).to_have_count(0)
        assert bridge_config.secret not in await page.content()
        await tabs.get_by_role("tab", name="员工").click()
        await tabs.get_by_role("tab", name="门禁").click()
        await expect(main).to_contain_text("在线")
        await expect(main.get_by_role("button", name="重新生成密钥")).to_be_visible()
    finally:
        await sim.stop()


async def test_who_sees_which_settings_and_the_server_refuses_the_rest(app, admin, api_client):
    c = await make_community(app, "sr")
    base = f"/api/communities/{c.id}"
    # A guard: no Settings at all.
    page = await admin.open()
    await admin.sign_in(page, "sr-security")
    await page.get_by_role("tab", name="更多").click()
    await expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    await expect(page.get_by_text("设置")).to_have_count(0)
    await page.goto(admin.base_url + "/admin/settings")
    await expect(page).to_have_url(admin.base_url + "/admin/more")
    guard = c.tokens["security"]
    refused = [await api_client.put(f"{base}/sla-targets", {"urgent_minutes": 1}, token=guard),
               await api_client.post(f"{base}/gates/{c.gates['main']}/bridge", token=guard),
               await api_client.get(f"{base}/staff", token=guard)]
    assert [r.status for r in refused] == [403, 403, 403]

    # A manager: targets and gates, the staff list, but no staff or community changes.
    page = await open_settings(admin, "sr-manager")
    await expect(page.get_by_text("Garden sr")).to_have_count(2)  # header and details
    await expect(page.get_by_role("button", name="保存")).to_have_count(0)
    assert (await api_client.patch(base, {"address": "x"}, token=c.tokens["manager"])).status == 403
    await page.get_by_role("tablist").first.get_by_role("tab", name="员工").click()
    await expect(page.locator('[data-staff="sr-admin"]')).to_be_visible()
    await expect(page.get_by_role("button", name="添加员工")).to_have_count(0)
    await expect(page.get_by_role("button", name="修改角色")).to_have_count(0)
    await admin.check_screen(page, "settings-staff-manager")
    added = await api_client.post(f"{base}/staff", {"username": "sr-x", "password": "0123456789ab",
                                                    "name": "x", "roles": ["security"]},
                                  token=c.tokens["manager"])
    assert added.status == 403
    assert (await api_client.get(f"{base}/sla-targets", token=guard)).body["urgent_minutes"] == 15


async def test_manager_adds_places_by_hand_and_imports_a_spreadsheet_with_a_row_error(
        app, admin, api_client, tmp_path):
    c = await make_community(app, "rm")
    places = f"/api/communities/{c.id}/places"
    page = await open_settings(admin, "rm-manager")
    await page.get_by_role("tablist").first.get_by_role("tab", name="房屋").click()
    await expect(page.get_by_text("房号补零到同一位数")).to_be_visible()
    await expect(page.locator('[data-place="1"]')).to_be_visible()
    add = page.get_by_role("button", name="添加楼栋、单元或房屋")
    await page.get_by_label("编号").fill("9")
    await add.click()
    await expect(page.get_by_role("status")).to_have_text("已添加 9")
    await page.locator('[data-place="9"]').click()
    await expect(page.get_by_label("编号")).to_have_value("9-")
    await page.get_by_label("编号").fill("9-1")
    await add.click()
    await page.locator('[data-place="9-1"]').click()
    await page.get_by_label("编号").fill("9-1-0101")
    await page.get_by_label("面积（㎡）").fill("88.5")
    await add.click()
    await expect(page.locator('[data-place="9-1-0101"]')).to_contain_text("88.5 ㎡")
    rooms = (await api_client.get(f"{places}?kind=room&under=9-1", token=c.tokens["admin"])).body
    assert [(r["path"], r["area_m2"]) for r in rooms] == [("9-1-0101", 88.5)]
    # A room whose unit does not exist is refused, in words beside the path.
    await page.get_by_label("编号").fill("9-7-0101")
    await add.click()
    await expect(page.locator("#place-path").locator("xpath=ancestor::div[contains(@class,'van-cell')]")
                 .locator(".van-field__error-message")).not_to_be_empty()
    assert (await api_client.get(f"{places}?under=9-7", token=c.tokens["admin"])).body == []
    await admin.check_screen(page, "settings-rooms")

    sheet = tmp_path / "rooms.csv"
    sheet.write_text("楼栋,单元,房号,面积,姓名,手机,关系\n"
                     "8,1,0101,90,,,\n"
                     "8,1,0102,,王芳,13800138001,业主\n"
                     "8,1,0103,,李雷,12345,业主\n", encoding="utf-8")
    await page.get_by_label("选择文件").set_input_files(str(sheet))
    await expect(page.get_by_text("导入完成")).to_be_visible()
    report = page.locator(".import-report")
    for title, count in (("新建", "2"), ("更新", "0"), ("未变", "0"), ("失败", "1")):
        await expect(report.locator(".van-cell", has_text=title)).to_contain_text(count)
    error = report.locator(".import-error")
    await expect(error).to_have_count(1)
    await expect(error).to_contain_text("第 4 行 · 手机")
    await admin.check_screen(page, "settings-rooms-import")
    rooms = (await api_client.get(f"{places}?kind=room&under=8-1", token=c.tokens["admin"])).body
    assert sorted(r["path"] for r in rooms) == ["8-1-0101", "8-1-0102"]


async def test_staff_without_places_write_see_no_rooms_and_the_server_refuses(
        app, admin, api_client):
    c = await make_community(app, "rn")
    base = f"/api/communities/{c.id}"
    for username, role in (("rn-customer-service", "customer_service"), ("rn-security", "security")):
        page = await admin.open()
        await admin.sign_in(page, username)
        await page.goto(admin.base_url + "/admin/settings")
        await expect(page).to_have_url(admin.base_url + "/admin/more")
        await expect(page.get_by_text("房屋")).to_have_count(0)
        token = c.tokens[role]
        added = await api_client.post(f"{base}/places", {"path": "7"}, token=token)
        imported = await api_client.post(f"{base}/imports", raw="楼栋,单元,房号\n7,1,0101\n".encode(),
                                         headers={"Content-Type": "text/csv"}, token=token)
        assert (added.status, imported.status) == (403, 403)
        await page.close()
    assert (await api_client.get(f"{base}/places?under=7", token=c.tokens["admin"])).body == []
