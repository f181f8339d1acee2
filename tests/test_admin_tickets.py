"""The admin view's Today and Tickets screens in Chromium, against the real server and feed."""

import io

import pytest
from PIL import Image
from playwright.async_api import expect

from tests.browser import AdminPages
from tests.tickets_support import Api, make_world

pytestmark = pytest.mark.asyncio


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(out, "JPEG")
    return out.getvalue()


async def act(page, action: str) -> None:
    await page.locator(f'[data-action="{action}"]').click()


async def submit(page) -> None:
    await page.locator('[data-test="submit-action"]').click()
    await expect(page.locator(".action-form")).to_have_count(0)


async def open_ticket(admin: AdminPages, page, ticket_id: str) -> None:
    await page.get_by_role("tab", name="工单").click()
    await page.locator(f'[data-ticket="{ticket_id}"]').click()
    await expect(page.get_by_role("heading", name="工单详情")).to_be_visible()


async def test_dispatch_from_submission_to_close_watched_live(app, api_client, admin):
    w = await make_world(app, "dt")
    t = Api(api_client, w)
    tid = (await t.report()).body["id"]

    watcher = await admin.open()  # the manager keeps Today open on another phone
    await admin.sign_in(watcher, "dt-manager")
    row = watcher.locator(f'[data-ticket="{tid}"]')
    await expect(row).to_contain_text("待派单")
    await admin.check_screen(watcher, "today")

    desk = await admin.open()
    await admin.sign_in(desk, "dt-customer-service")
    await desk.get_by_role("tab", name="工单").click()
    await expect(desk.locator(f'[data-ticket="{tid}"]')).to_be_visible()
    await admin.check_screen(desk, "tickets")
    await desk.locator(f'[data-ticket="{tid}"]').click()
    await expect(desk.locator('[data-test="state"]')).to_contain_text("待派单")
    await admin.check_screen(desk, "ticket-detail")
    await act(desk, "assign")
    await desk.get_by_role("radio", name="maintenance").click()
    await admin.check_screen(desk, "ticket-assign")
    await submit(desk)
    await expect(desk.locator('[data-test="state"]')).to_contain_text("已派单")
    await expect(row).to_contain_text("已派单")  # live on the other phone

    worker = await admin.open()
    await admin.sign_in(worker, "dt-maintenance")
    await open_ticket(admin, worker, tid)
    await act(worker, "accept")
    await expect(row).to_contain_text("已接单")
    await act(worker, "check_in")
    await expect(row).to_contain_text("处理中")
    await act(worker, "resolve")
    await worker.get_by_label("添加照片").set_input_files(
        files=[{"name": "done.jpg", "mimeType": "image/jpeg", "buffer": jpeg()}])
    await worker.get_by_label("说明").fill("换了新阀门")
    await admin.check_screen(worker, "ticket-resolve")
    await submit(worker)
    await expect(row).to_contain_text("已完成")
    photo = worker.get_by_role("img", name="照片 1")
    await expect(photo).to_be_visible()  # a signed link: an <img> needs no bearer header
    await worker.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                                   arg=await photo.element_handle())

    await expect(desk.locator('[data-action="follow_up"]')).to_be_visible()  # live, no reload
    await act(desk, "follow_up")
    await desk.get_by_label("回访记录").fill("住户满意")
    await submit(desk)
    await act(desk, "close")
    await expect(desk.locator('[data-test="state"]')).to_contain_text("已关闭")
    await expect(row).to_be_hidden()  # no longer open: gone from Today
    ticket = (await t.get("customer_service", tid)).body
    assert ticket["state"] == "closed" and len(ticket["photos"]) == 1
    assert [h["action"] for h in ticket["history"]][-6:] == [
        "assign", "accept", "check_in", "resolve", "follow_up", "close"]


async def test_a_role_without_a_permission_sees_no_control_and_the_server_refuses(
        app, api_client, admin):
    w = await make_world(app, "rp")
    t = Api(api_client, w)
    tid = (await t.report()).body["id"]
    page = await admin.open()
    await admin.sign_in(page, "rp-maintenance")
    await expect(page.get_by_role("tab", name="工单")).to_be_visible()
    await expect(page.get_by_role("tab", name="住户")).to_have_count(0)  # no People for workers
    await open_ticket(admin, page, tid)
    await expect(page.get_by_text("当前没有您可以执行的操作")).to_be_visible()
    await expect(page.locator('[data-action="assign"]')).to_have_count(0)
    refused = await t.act("maintenance", tid, "assign", assignee_id=w.c.staff["maintenance"])
    assert refused.status == 403, refused.body
    residents = await api_client.get(f"/api/communities/{w.c.id}/residents",
                                     token=w.tokens["maintenance"])
    assert residents.status == 403


async def test_the_ticket_list_filters_by_state(app, api_client, admin):
    w = await make_world(app, "tf")
    t = Api(api_client, w)
    waiting = (await t.report()).body["id"]
    dispatched = (await t.report(category="lock")).body["id"]
    await t.through(dispatched, "assign")
    page = await admin.open("/admin/tickets")
    await admin.sign_in(page, "tf-customer-service")
    await page.get_by_role("tab", name="工单").click()
    rows = page.locator(".ticket-list [data-ticket]")
    await expect(rows).to_have_count(2)
    await page.get_by_text("全部状态").click()
    await page.locator(".van-dropdown-item__option", has_text="已派单").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-ticket", dispatched)
    await admin.check_screen(page, "tickets-filtered")
    assert waiting != dispatched
