"""Benchmark: the admin view in Chromium, against a bare static page from the same server.

    python -m scripts.bench_admin [--tickets 200] [--runs 5]

Starts the embedded stores (or uses MONGODB_URI / REDIS_URL) and the server in this
process, seeds a community with that many open tickets, and drives Debian's Chromium
(/usr/bin/chromium) with Playwright. Prints the first load's compressed bytes (shell and
assets as sent, gzip; API answers counted apart), then the median time from navigation to
the Today screen showing every open ticket (reload: the session resumes from its cookie,
assets come from cache) beside the median load time of a bare static page served by the same
server in the same run, as a ratio. Both are read in the page (Navigation Timing /
performance.now(), which counts from the navigation's start).
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import uuid
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web
from playwright.async_api import async_playwright

from models.access import Principal
from server.app import XiaoquApp
from server.embedded import start_mongo, start_redis
from server.settings import load_settings
from server.stores import connect_mongo, connect_redis

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USERNAME, PASSWORD = "bench-desk", "bench password 123"
BARE_PAGE = "<!doctype html><meta charset=utf-8><title>bare</title><p>bare static page</p>"
CATEGORIES = ("drain", "lock", "plumbing", "electrical", "lights", "water_leak")


class BarePage(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Cache-Control", "no-cache")
        self.finish(BARE_PAGE)


async def seed(app: XiaoquApp, tickets: int) -> None:
    community = await app.places.create_community("Bench Garden", "bench")
    cid = str(community["_id"])
    for path in ("1", "1-1", "1-1-101"):
        await app.places.create_place(cid, path)
    await app.staff.create(USERNAME, PASSWORD, "Bench desk", {cid: ["customer_service"]})
    resident = await app.residents.from_wechat("openid-bench", None, None)
    rid = str(resident["_id"])
    link = await app.bindings.request(rid, cid, "1-1-101", "owner", None)
    office = Principal("staff", "bench", {cid: frozenset({"admin"})})
    await app.bindings.decide(office, cid, str(link["_id"]), "approve")
    caller = Principal("resident", rid, {cid: frozenset({"owner"})})
    for n in range(tickets):
        await app.tickets.create(caller, cid, kind="repair", category=CATEGORIES[n % len(CATEGORIES)],
                                 description=f"bench ticket {n}", area="room", place_path="1-1-101")


async def bench(mongo_url: str, redis_url: str, tickets: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(mongodb_uri=mongo_url, redis_url=redis_url, data_dir=Path(data_dir),
                                 mongodb_db=f"bench_{uuid.uuid4().hex[:8]}")
        app = XiaoquApp(settings, connect_mongo(mongo_url), connect_redis(redis_url))
        await app.startup()
        app.add_handlers(r".*", [(r"/bench/bare", BarePage)])
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            await seed(app, tickets)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                await measure(browser, base, tickets, runs)
                await browser.close()
        finally:
            server.stop()
            await app.mongo.drop_database(settings.mongodb_db)
            await app.close()


async def measure(browser, base: str, tickets: int, runs: int) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 812})
    page = await context.new_page()
    finished = []
    page.on("requestfinished", lambda request: finished.append(request))
    await page.goto(base + "/admin/")
    await page.get_by_label("用户名").fill(USERNAME)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    # Arrow functions: a bare expression would be eval'd in the page, which its CSP refuses.
    shown = f"() => document.querySelectorAll('.open-tickets [data-ticket]').length === {tickets}"
    await page.wait_for_function(shown, timeout=60_000)
    static, api = 0, 0
    for request in finished:
        sizes = await request.sizes()
        sent = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        if "/api/" in request.url:
            api += sent
        else:
            static += sent
    print(f"first load: {static} bytes compressed (shell and assets, budget 204800), "
          f"plus {api} bytes of API answers")

    today, bare = [], []
    for _ in range(runs):
        await page.goto(base + "/admin/today")
        await page.wait_for_function(shown, timeout=60_000)
        today.append(await page.evaluate("performance.now()"))
        await page.goto(base + "/bench/bare")
        loaded = "performance.getEntriesByType('navigation')[0].loadEventEnd"
        await page.wait_for_function(f"() => {loaded} > 0")
        bare.append(await page.evaluate(loaded))
    t_today, t_bare = statistics.median(today), statistics.median(bare)
    print(f"bare static page, navigation to load: {t_bare:.1f} ms (median of {runs})")
    print(f"Today with {tickets} open tickets, navigation to all shown: {t_today:.1f} ms "
          f"(median of {runs}) = {t_today / t_bare:.1f}x the bare page")
    await context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        mongo_url = os.environ.get("MONGODB_URI") or stack.enter_context(start_mongo(None)).url
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(start_redis(None)).url
        asyncio.run(bench(mongo_url, redis_url, args.tickets, args.runs))


if __name__ == "__main__":
    main()
