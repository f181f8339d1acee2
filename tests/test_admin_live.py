"""The admin view stays live: Today follows the feed, the lost-connection banner comes and goes,
and the feed resumes from its last id; staff of several communities switch between them."""

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from playwright.async_api import expect

from server.embedded import start_redis
from tests.builders import make_community
from tests.gate_fixtures import hub, start_sim_bridge  # noqa: F401 (fixture)
from tests.tickets_support import Api, make_world

pytestmark = pytest.mark.asyncio
WAIT_SECONDS = 30  # seconds: the deadline of a wait for an event, only a hung test meets it


async def until(predicate, seconds: float = WAIT_SECONDS) -> None:
    """Wait for a condition the test's own code observes (the browser's side has `expect`)."""
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_today_orders_by_urgency_and_follows_alarms_live(app, api_client, admin):
    w = await make_world(app, "tl")
    t = Api(api_client, w)
    calm = (await t.report(category="drain")).body["id"]  # quick: 60 minutes
    page = await admin.open()
    await admin.sign_in(page, "tl-security")
    await expect(page.locator(f'[data-ticket="{calm}"]')).to_be_visible()
    alarms = page.locator('[data-test="alarms-open"]')
    await expect(alarms).to_have_text("0")

    urgent = (await t.report(category="gas_leak", area="pipe", place_path="1-1")).body["id"]
    rows = page.locator(".open-tickets [data-ticket]")
    await expect(rows).to_have_count(2)  # arrived live
    assert [await r.get_attribute("data-ticket") for r in await rows.all()] == [urgent, calm]
    await expect(rows.first).to_contain_text("特急")

    await app.gate_alarms.raise_alarm({"community_id": ObjectId(w.c.id), "gate_id": ObjectId(
        w.c.gates["main"]), "_id": None}, "door_forced", "tl-forced-1")
    await expect(alarms).to_have_text("1")
    await expect(page.get_by_text("门被强行打开")).to_be_visible()


async def test_today_shows_gates_going_online_and_offline_live(app, admin, hub, tmp_path):
    c = await make_community(app, "tg")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    page = await admin.open()
    await admin.sign_in(page, "tg-security")
    offline = page.locator('[data-test="gates-offline"]')
    await expect(offline).to_have_text("2")  # no bridge connected yet
    bridge = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await expect(offline).to_have_text("1")
    finally:
        await bridge.stop()
    await expect(offline).to_have_text("2")
    await expect(page.get_by_text("门禁离线").first).to_be_visible()  # the offline alarm


async def test_today_shows_the_visitors_expected_today(app, api_client, admin):
    w = await make_world(app, "tv")
    now = datetime.now(UTC)
    invited = await api_client.post(f"/api/communities/{w.c.id}/invitations", {
        "name": "王小明", "purpose": "dinner", "valid_from": now.isoformat(),
        "valid_to": (now + timedelta(hours=2)).isoformat()}, token=w.tokens["ann"])
    assert invited.status == 201, invited.body
    page = await admin.open()
    await admin.sign_in(page, "tv-security")
    await expect(page.locator('[data-test="visitors-today"]')).to_have_text("1")
    await expect(page.get_by_text("王小明")).to_be_visible()


class TestLostConnection:
    @pytest.fixture
    def redis_url(self, own_redis):
        return own_redis.url

    async def test_banner_shows_while_the_feed_is_down_and_nothing_is_missed(
            self, app, api_client, admin, own_redis, redis_dir):
        w = await make_world(app, "lc")
        t = Api(api_client, w)
        hellos, held, state = [], [], {"hold": False}

        def route(ws):
            # The phone's side of the socket: hold reconnections while the test says so.
            if state["hold"]:
                held.append(ws)
                return
            server = ws.connect_to_server()

            def forward(message):
                if not server_seen(ws):
                    hellos.append(json.loads(message))
                server.send(message)
            ws.on_message(forward)

        greeted = set()

        def server_seen(ws):
            first = id(ws) in greeted
            greeted.add(id(ws))
            return first

        page = await admin.open()
        await page.route_web_socket(re.compile(r"/feed$"), route)
        await admin.sign_in(page, "lc-manager")
        first = (await t.report()).body["id"]
        await expect(page.locator(f'[data-ticket="{first}"]')).to_be_visible()
        banner = page.get_by_role("alert").filter(has_text="网络连接已断开")
        await expect(banner).to_have_count(0)

        state["hold"] = True
        own_redis.process.terminate()  # the server loses its feed: sockets close with 1012
        own_redis.process.wait(10)
        await expect(banner).to_be_visible()
        await admin.check_screen(page, "today-offline")
        await until(lambda: held)  # the page is trying again

        port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])
        with start_redis(redis_dir, port=port):  # same data, same port
            second = (await t.report(category="lock")).body["id"]  # while the page is away
            state["hold"] = False
            for ws in held:
                await ws.close()
            await expect(banner).to_have_count(0)
            await expect(page.locator(f'[data-ticket="{second}"]')).to_be_visible()
            resumed_from = hellos[-1]["last_id"]
            assert hellos[0].get("last_id") is None and resumed_from
            missed = await app.notifier.feed_since(w.c.id, resumed_from)
            assert [e["ticket"]["id"] for e in missed] == [second]


async def test_staff_of_two_communities_switch_and_the_choice_survives_a_reload(app, admin):
    east = await make_community(app, "east")
    west = await make_community(app, "west")
    await app.staff.add_to_community(west.id, "east-manager", ["manager"])
    page = await admin.open()
    await admin.sign_in(page, "east-manager")
    switcher = page.get_by_role("button", name="切换小区")
    await expect(switcher).to_contain_text("Garden east")
    await switcher.click()
    await page.get_by_role("button", name="Garden west").click()
    await expect(switcher).to_contain_text("Garden west")
    await page.reload()
    await expect(page.get_by_role("button", name="切换小区")).to_contain_text("Garden west")

    await page.get_by_role("tab", name="更多").click()
    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("tab", name="Tickets")).to_be_visible()
    await admin.check_screen(page, "more-english")
