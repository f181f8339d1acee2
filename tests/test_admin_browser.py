"""The admin view in Chromium: signing in and out, surviving a reload, first-load size, cache."""

import pytest
from playwright.async_api import expect

from tests.builders import make_community

pytestmark = pytest.mark.asyncio
FIRST_LOAD_BUDGET = 200 * 1024  # compressed bytes, everything up to the Today screen


async def test_sign_in_survives_a_reload_and_sign_out_ends_it(app, admin):
    c = await make_community(app, "si")
    page = await admin.open()
    await expect(page.get_by_role("heading", name="员工登录")).to_be_visible()
    await admin.check_screen(page, "signin")
    await admin.sign_in(page, "si-customer-service")
    await expect(page).to_have_url(admin.base_url + "/admin/today")
    # The page's scripts hold no refresh token: only the CSRF cookie is readable.
    assert "xiaoqu_refresh" not in await page.evaluate("document.cookie")
    assert await page.evaluate("Object.keys(localStorage).every((k) => !/token/i.test(localStorage[k]))")

    await page.reload()
    await expect(page.locator(".van-tabbar")).to_be_visible()
    await expect(page).to_have_url(admin.base_url + "/admin/today")

    await page.get_by_role("tab", name="更多").click()
    await expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    await admin.check_screen(page, "more")
    await page.get_by_role("button", name="退出登录").click()
    await expect(page.get_by_role("heading", name="员工登录")).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("heading", name="员工登录")).to_be_visible()
    assert c.id  # the community existed throughout


async def test_wrong_password_is_said_in_words(app, admin):
    await make_community(app, "wp")
    page = await admin.open()
    await page.get_by_label("用户名").fill("wp-security")
    await page.get_by_label("密码").fill("not it")
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")


async def test_first_load_fits_the_budget_and_a_second_visit_comes_from_cache(app, admin,
                                                                             monkeypatch):
    await make_community(app, "fl")
    seen = []  # every path the server answered
    log = app.log_request
    monkeypatch.setattr(app, "log_request",
                        lambda handler: (seen.append(handler.request.path), log(handler)))
    sizes = []
    page = await admin.open("/admin/")
    page.on("requestfinished", lambda r: sizes.append(r))
    await page.reload()  # a first visit, measured from its navigation on
    await admin.sign_in(page, "fl-manager")
    await page.wait_for_load_state("networkidle")
    total = 0
    for request in sizes:
        measured = await request.sizes()
        total += measured["responseBodySize"] + measured["responseHeadersSize"]
    assert 0 < total <= FIRST_LOAD_BUDGET, f"first load {total} bytes"

    seen.clear()
    second = await page.context.new_page()
    admin.watch(second)
    await second.goto(admin.base_url + "/admin/today")
    await expect(second.locator(".van-tabbar")).to_be_visible()
    assert "/admin/today" in seen  # the shell is revalidated…
    assert not [p for p in seen if p.startswith("/admin/assets/")], seen  # …its assets are not
