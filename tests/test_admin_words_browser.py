"""The admin view's words in Chromium: every screen shows the words it declares, however it
was reached, and one screen's words never replace another's."""

import pytest
from playwright.async_api import expect

from tests.builders import make_community
from tests.tickets_support import settings, t, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio


async def test_a_ticket_opened_by_its_link_shows_its_words(admin, t, world):
    # No list screen ran first to declare the ticket words: the detail screen imports them.
    ticket = (await t.report()).body
    page = await admin.open()
    await admin.sign_in(page, "t-customer-service")
    await page.goto(f"{admin.base_url}/admin/tickets/{ticket['id']}")
    await expect(page.locator('[data-test="state"]')).to_contain_text("待派单")
    await expect(page.get_by_text("报修 · 水管")).to_be_visible()


async def test_the_gates_board_and_the_gate_settings_each_say_their_own_words(app, admin):
    # Both name a "no bridge" state; whichever screen ran last must not reword the other.
    await make_community(app, "gw")
    page = await admin.open()
    await admin.sign_in(page, "gw-admin")
    tabbar = page.locator(".van-tabbar")
    await tabbar.get_by_role("tab", name="门禁").click()
    await expect(page.locator('.gate[data-gate="main"] .gate-status')).to_have_text("未接入")
    await tabbar.get_by_role("tab", name="更多").click()
    await page.get_by_text("设置").click()
    await expect(page.get_by_role("heading", name="设置")).to_be_visible()
    await page.get_by_role("main").get_by_role("tab", name="门禁").click()
    await expect(page.locator('.gate-setting[data-gate="main"]')).to_contain_text("未配置网关")
    await tabbar.get_by_role("tab", name="门禁").click()
    await expect(page.locator('.gate[data-gate="main"] .gate-status')).to_have_text("未接入")
