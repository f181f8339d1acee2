"""The KPI screen in Chromium: figures beside targets, the chart's bars, the CSV download."""

from datetime import UTC, datetime, time, timedelta

import pytest
from playwright.async_api import expect

from models.common import ManualClock
from tests.tickets_support import settings, t, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio
FULL = ("assign", "accept", "check_in", "resolve", "confirm", "follow_up", "close")


# Today at 09:00 China time: a manual clock near the real one (sessions stored in MongoDB
# expire by the real clock).
START = datetime.combine(datetime.now(UTC).date(), time(1, 0), UTC)


@pytest.fixture
def clock():
    return ManualClock(START)


def percent(numerator: int, denominator: int) -> str:
    return ("%.1f" % (100 * numerator / denominator)).removesuffix(".0") + "%"


async def seed(t, clock):
    """Yesterday: one ticket left open. Today: one closed with a 5-star rating and the
    follow-up call, one resolved and rated 3 without the call, one cancelled."""
    clock.current = START - timedelta(days=1)
    assert (await t.report()).status == 201
    clock.current = START
    done, half, dropped = [(await t.report()).body["id"] for _ in range(3)]
    await t.through(done, *FULL)
    await t.through(half, "assign", "accept", "check_in", "resolve")
    assert (await t.act("ann", half, "confirm", rating=3)).status == 200
    assert (await t.act("ann", dropped, "cancel")).status == 200


async def test_kpi_chart_shows_the_figures_of_each_day(app, admin, api_client, t, world, clock):
    await seed(t, clock)
    # The figures, worked out from the seed rather than read from the server.
    today = {"tickets": 3, "closed_loop_rate": percent(1, 2), "followup_rate": percent(1, 2),
             "satisfaction_rate": percent(1, 2), "rework_rate": percent(0, 2)}
    series = (await api_client.get(f"/api/communities/{world.c.id}/kpi/series?period=day&count=14",
                                   token=world.tokens["manager"])).body
    assert [k["tickets"] for k in series[-2:]] == [1, 3]
    assert series[-1]["followup_rate"]["value"] == 0.5

    page = await admin.open()
    await admin.sign_in(page, "t-manager")
    await page.get_by_role("tab", name="更多").click()
    await page.get_by_role("link", name="考核指标").or_(page.get_by_text("考核指标")).first.click()
    rows = page.locator(".kpi-row")
    count = rows.filter(has_text="工单数").locator(".van-cell__value")
    await expect(count).to_have_text("3")
    for name in ("closed_loop_rate", "followup_rate", "satisfaction_rate", "rework_rate"):
        await expect(page.locator(f'[data-kpi="{name}"] .figure')).to_have_text(today[name])
    await expect(page.locator('[data-kpi="followup_rate"]')).to_contain_text("目标 ≥ 100%")
    await expect(page.locator('[data-kpi="followup_rate"]')).to_contain_text("未达标")
    await expect(page.locator('[data-kpi="rework_rate"]')).to_contain_text("达标")

    chart = page.get_by_role("img", name="工单数趋势")
    await expect(chart).to_be_visible()
    bars = chart.locator(".bar")
    await expect(bars).to_have_count(14)
    assert [await bars.nth(i).get_attribute("data-value") for i in (12, 13)] == ["1", "3"]
    assert await bars.nth(13).get_attribute("data-label") == START.strftime("%m-%d")
    await expect(bars.nth(13).locator(".figure")).to_have_text("3")
    await admin.check_screen(page, "kpi")

    await page.get_by_role("radio", name="回访率").click()
    chart = page.get_by_role("img", name="回访率趋势")
    await expect(chart.locator(".bar").nth(13).locator(".figure")).to_have_text(today["followup_rate"])
    await expect(chart.locator(".target")).to_contain_text("目标 ≥ 100%")
    await admin.check_screen(page, "kpi-followup")

    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="下载 CSV").click()
    download = await downloading.value
    lines = (await download.path()).read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    last = dict(zip(header, lines[-1].split(",")))
    assert (last["期间开始"], last["工单数"], last["已取消"], last["回访率"], last["满意率"]) == \
        (START.date().isoformat(), "3", "1", today["followup_rate"], today["satisfaction_rate"])
    assert len(lines) == 15  # the header and 14 days

    await page.get_by_role("radio", name="月").click()
    await expect(page.get_by_role("img", name="回访率趋势").locator(".bar")).to_have_count(12)
    this_month = 4 if START.day > 1 else 3  # yesterday's ticket counts if it was this month
    await expect(count).to_have_text(str(this_month))


async def test_roles_without_kpis_see_no_screen_and_are_refused(app, admin, api_client, world):
    page = await admin.open()
    await admin.sign_in(page, "t-maintenance")
    await page.get_by_role("tab", name="更多").click()
    await expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    await expect(page.get_by_text("考核指标")).to_have_count(0)
    await page.goto(admin.base_url + "/admin/kpi")
    await expect(page).to_have_url(admin.base_url + "/admin/more")
    refused = await api_client.get(f"/api/communities/{world.c.id}/kpi/series",
                                   token=world.tokens["maintenance"])
    assert refused.status == 403
