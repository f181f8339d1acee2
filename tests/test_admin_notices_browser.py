"""The Notices and Surveys screens in Chromium: write, publish, see who has read; build a survey,
open it, read its results and satisfaction rate."""

import pytest
from bson import ObjectId
from playwright.async_api import expect

from tests.builders import make_community, make_resident

pytestmark = pytest.mark.asyncio


async def resident(app, c, name, room, relation="owner"):
    rid, token = await make_resident(app, c, f"{c.code}-{name}", room, relation)
    await app.db.residents.update_one({"_id": ObjectId(rid)},
                                      {"$set": {"name": name}})
    return token


async def test_customer_service_writes_publishes_and_sees_who_has_read(app, admin, api_client):
    c = await make_community(app, "nb")
    readers = {name: await resident(app, c, name, room) for name, room in
               (("王芳", "1-1-101"), ("李雷", "1-1-102"), ("赵敏", "1-2-101"))}
    page = await admin.open()
    await admin.sign_in(page, "nb-customer-service")
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("公告").click()
    await page.get_by_role("button", name="写公告").click()
    await page.get_by_label("标题").fill("停水通知")
    await page.get_by_label("正文").fill("明天 **9:00–12:00** 停水\n\n<b>请储水</b>")
    await page.get_by_role("switch", name="紧急").click()
    await admin.check_screen(page, "notice-write")
    await page.get_by_role("button", name="保存草稿").click()

    await expect(page.locator('[data-test="state"]')).to_contain_text("草稿")
    body = page.locator(".notice-text .body")
    await expect(body.locator("strong")).to_have_text("9:00–12:00")
    await expect(body).to_contain_text("<b>请储水</b>")  # typed HTML is shown as text
    await page.get_by_role("button", name="立即发布").click()
    await expect(page.get_by_role("status")).to_have_text("已完成：立即发布")
    await expect(page.locator('[data-test="state"]')).to_contain_text("已发布")
    await expect(page.locator('[data-test="total-reads"]')).to_contain_text("0/3 已读")

    # Two residents read it in the mini-program (one of them twice).
    [notice] = (await api_client.get(f"/api/communities/{c.id}/notices",
                                     token=readers["王芳"])).body
    for name in ("王芳", "王芳", "赵敏"):
        reply = await api_client.post(f"/api/communities/{c.id}/notices/{notice['id']}/read",
                                      token=readers[name])
        assert reply.status == 200, reply.body
    await page.reload()
    await expect(page.locator('[data-test="total-reads"]')).to_contain_text("2/3 已读")
    await page.locator('[data-building="1"]').click()
    unread = page.locator(".unread")
    await expect(unread).to_contain_text("李雷")
    await expect(unread).not_to_contain_text("王芳")
    await admin.check_screen(page, "notice-reads")

    await page.get_by_role("button", name="撤回").click()
    await page.get_by_role("button", name="确定").click()
    await expect(page.get_by_role("dialog").get_by_text("请填写撤回原因")).to_be_visible()
    await page.get_by_label("撤回原因").fill("时间改了")
    await page.get_by_role("button", name="确定").click()
    await expect(page.locator('[data-test="state"]')).to_contain_text("已撤回")
    assert (await api_client.get(f"/api/communities/{c.id}/notices",
                                 token=readers["王芳"])).body == []

    await page.goto(admin.base_url + "/admin/notices")
    row = page.locator('[data-notice="停水通知"]')
    await expect(row).to_contain_text("紧急")
    await expect(row).to_contain_text("已撤回")


async def test_a_manager_builds_a_survey_and_reads_its_results(app, admin, api_client):
    c = await make_community(app, "sb")
    tokens = [await resident(app, c, name, room) for name, room in
              (("王芳", "1-1-101"), ("李雷", "1-1-102"), ("赵敏", "1-2-101"))]
    page = await admin.open()
    await admin.sign_in(page, "sb-manager")
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_text("满意度调查").click()
    await page.get_by_role("button", name="新建调查").click()
    await page.get_by_label("调查名称").fill("2026 年度满意度调查")
    await page.get_by_role("button", name="加满意度题").click()
    await page.get_by_role("button", name="加问答题").click()
    await page.locator("#q1-text").fill("其他建议")
    await admin.check_screen(page, "survey-write")
    await page.get_by_role("button", name="保存草稿").click()
    await expect(page.locator('[data-test="state"]')).to_contain_text("草稿")
    await page.get_by_role("button", name="开始调查").click()
    await expect(page.locator('[data-test="state"]')).to_contain_text("进行中")

    [survey] = (await api_client.get(f"/api/communities/{c.id}/surveys", token=tokens[0])).body
    assert [q["kind"] for q in survey["questions"]] == ["single", "text"]
    for token, choice in zip(tokens, ("o1", "o2", "o3")):
        reply = await api_client.post(f"/api/communities/{c.id}/surveys/{survey['id']}/answers",
                                      {"answers": {"q1": choice, "q2": "楼道灯" if choice == "o3" else ""}},
                                      token=token)
        assert reply.status == 201, reply.body
    await page.reload()
    await expect(page.locator('[data-test="responses"]')).to_contain_text("3")
    rate = page.locator('[data-test="rate"]')
    await expect(rate.locator(".figure")).to_have_text("66.7%")
    await expect(rate).to_contain_text("未达标")
    await expect(page.locator('[data-question="q1"] [data-option="o3"]')).to_contain_text("1 份")
    await expect(page.locator('[data-question="q2"]')).to_contain_text("楼道灯")
    await admin.check_screen(page, "survey-results")
    await page.get_by_role("button", name="结束调查").click()
    await expect(page.locator('[data-test="state"]')).to_contain_text("已结束")


async def test_staff_without_notice_rights_read_but_do_not_write(app, admin):
    c = await make_community(app, "nr")
    page = await admin.open()
    await admin.sign_in(page, "nr-security")
    await page.get_by_role("tab", name="更多").click()
    await expect(page.get_by_text("满意度调查")).to_have_count(0)
    await page.get_by_text("公告").click()
    await expect(page.get_by_role("heading", name="公告")).to_be_visible()
    await expect(page.get_by_role("button", name="写公告")).to_have_count(0)
