"""A real headless Chromium for the web pages: what a phone's browser would show.

How to write a browser test for an admin-view screen
-----------------------------------------------------
Ask for the `admin` fixture (and `app` for test data); everything runs against the real
test server (conftest's `http_server`) with real stores::

    async def test_gates_board(app, admin):
        c = await make_community(app, "gb")                 # tests/builders.py: staff of every role
        page = await admin.open()                           # a phone-sized page (375×812)
        await admin.sign_in(page, f"{c.code}-security")     # password: builders.STAFF_PASSWORD
        await page.get_by_role("tab", name="门禁").click()    # Chinese labels by default
        await expect(page.get_by_text("main")).to_be_visible()
        await admin.check_screen(page, "gates")             # fits 375 px, axe-clean, screenshot

- Wait on the page, never on the clock: Playwright's `expect(...)` and locators retry until
  their condition holds (or fail after WAIT_MS, 30 s). `page.wait_for_function("() => ...")`
  for anything else — an arrow function: a bare expression string is eval'd, which the
  admin view's CSP refuses.
- `admin.check_screen(page, name)` asserts no horizontal scrolling, no serious/critical axe-core
  violations, and writes test-artifacts/screens/<name>.png (git-ignored). Call it once per
  screen state worth seeing.
- Each `admin.open()` is a fresh browser context (own cookies and cache): open two to watch one
  user's action arrive live on another's screen.
- At the end of each test the fixture fails it if the page logged an error (a CSP violation
  included) or asked anything of another origin.

One Chromium (Debian's /usr/bin/chromium; Playwright's own browser download is not available
here) runs for the whole session; each test attaches to it over the DevTools protocol,
because pytest-asyncio gives every test its own event loop and a Playwright connection
lives on one loop.
"""

import asyncio
import contextlib
import io
import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import pytest_asyncio
import qrcode
import zxingcpp
from PIL import Image
from playwright.async_api import Page, async_playwright, expect

from tests.builders import STAFF_PASSWORD

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "test-artifacts" / "screens"
AXE = ROOT / "admin" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 375, "height": 812}
BLOCKING_IMPACTS = ("serious", "critical")
# Every `expect` on a page waits this long at most (Playwright's own default is 5 s): a deadline
# that only a hung test meets, since a loaded machine's page is slow, not stuck.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


def chromium_binary() -> str:
    binary = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    assert binary, "Chromium is needed for the browser tests: apt-get install chromium"
    return binary


async def rendered_dom(url: str, budget_ms: int = 5000) -> str:
    """The page's DOM after its scripts ran (virtual time: no waiting on the wall clock).

    Runs as a subprocess without blocking the event loop, so the server under
    test, on the same loop, keeps answering the browser.
    """
    with tempfile.TemporaryDirectory() as profile:
        browser = await asyncio.create_subprocess_exec(
            chromium_binary(), *FLAGS, f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        dom, _ = await asyncio.wait_for(browser.communicate(), 60)
    assert browser.returncode == 0, f"chromium exited with {browser.returncode}"
    return dom.decode()


def decode_qr(png: bytes) -> str:
    """The text of the one QR code in a PNG image (a screenshot, or a code image)."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    assert len(found) == 1, f"expected one QR code, found {len(found)}"
    return found[0].text


@contextlib.contextmanager
def chromium(*flags: str):
    """A Chromium of its own (with `flags` besides the usual); its DevTools WebSocket address."""
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [chromium_binary(), *FLAGS, *flags, f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        endpoint = None
        for line in process.stderr:
            if match := re.search(r"DevTools listening on (ws://\S+)", line):
                endpoint = match[1]
                break
        assert endpoint, f"chromium did not start (exit code {process.poll()})"
        # Keep reading its log so a full pipe never stalls it.
        drain = threading.Thread(target=process.stderr.read, daemon=True)
        drain.start()
        try:
            yield endpoint
        finally:
            process.terminate()
            process.wait(10)
            drain.join(10)
            process.stderr.close()


CAMERA_FRAME = (640, 480)


def qr_video(path: Path, text: str, frames: int = 5) -> None:
    """A Y4M video (4:2:0) of `text`'s QR code on white, for Chromium's fake camera."""
    code = qrcode.make(text, border=4).get_image().convert("RGB")
    width, height = CAMERA_FRAME
    side = height * 3 // 4
    image = Image.new("RGB", CAMERA_FRAME, "white")
    image.paste(code.resize((side, side), Image.NEAREST), ((width - side) // 2, (height - side) // 2))
    y, cb, cr = image.convert("YCbCr").split()
    half = (width // 2, height // 2)
    frame = b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        out.write(frame * frames)


@contextlib.contextmanager
def camera_chromium(video: Path, text: str):
    """A Chromium whose camera shows `text`'s QR code (written to `video`) and grants the
    camera unasked; its DevTools WebSocket address, for `admin_pages`."""
    qr_video(video, text)
    with chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-video-capture={video}") as endpoint:
        yield endpoint


# A page's Web NFC, standing in for the phone's NFC hardware (headless desktop Chromium has none):
# `NDEFReader` as the spec has it, whose scan() either delivers one tag carrying `text` (an
# NDEF text record) or is refused the way a browser refuses (`refusal`, a DOMException name).
# The scan's signal is kept so the test sees the page stop scanning.
NFC_READER = """(([text, refusal]) => {
  window.NDEFReader = class NDEFReader extends EventTarget {
    async scan({ signal } = {}) {
      window.nfcSignal = signal
      if (refusal) throw new DOMException('refused', refusal)
      const data = new DataView(new TextEncoder().encode(text).buffer)
      const message = { records: [{ recordType: 'text', mediaType: null, id: '', encoding: 'utf-8', lang: 'zh', data }] }
      queueMicrotask(() => this.dispatchEvent(Object.assign(new Event('reading'), { serialNumber: '04:a2:5c', message })))
    }
  }
})(%s)"""


def nfc_reader(text: str = "", refusal: str = "") -> str:
    return NFC_READER % json.dumps([text, refusal])



@pytest.fixture(scope="session")
def chromium_endpoint():
    """One Chromium for the session; its DevTools WebSocket address."""
    with chromium() as endpoint:
        yield endpoint


class AdminPages:
    """Pages of the admin view in the session's Chromium (see the module docs)."""

    def __init__(self, browser, base_url: str):
        self.browser = browser
        self.base_url = base_url
        self.contexts = []
        self.problems: list[str] = []

    async def open(self, path: str = "/admin/", viewport: dict = PHONE) -> Page:
        context = await self.browser.new_context(viewport=viewport, has_touch=True,
                                                 locale="zh-CN", device_scale_factor=2)
        self.contexts.append(context)
        page = await context.new_page()
        self.watch(page)
        await page.goto(self.base_url + path)
        return page

    def watch(self, page: Page) -> None:
        # An HTTP error status is an answer the page handles; Chromium logs it anyway.
        page.on("console", lambda m: m.type == "error" and
                not m.text.startswith("Failed to load resource: the server responded") and
                self.problems.append(f"console error on {page.url}: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error on {page.url}: {e}"))
        page.on("request", lambda r: r.url.startswith((self.base_url, "data:", "blob:")) or
                self.problems.append(f"request to another origin: {r.url}"))

    async def sign_in(self, page: Page, username: str, password: str = STAFF_PASSWORD) -> None:
        """Sign in on the sign-in screen and wait for the app's tab bar."""
        await page.get_by_label("用户名").fill(username)
        await page.get_by_label("密码").fill(password)
        await page.get_by_role("button", name="登录").click()
        await expect(page.locator(".van-tabbar")).to_be_visible()

    async def check_screen(self, page: Page, name: str) -> None:
        """The screen fits a phone, has no serious accessibility faults, and is saved as a PNG."""
        await page.wait_for_load_state("networkidle")
        SCREENS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SCREENS / f"{name}.png", full_page=True)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name}: scrolls {overflow}px sideways"
        violations = await self.axe_violations(page)
        assert not violations, f"{name}: accessibility violations {violations}"

    @staticmethod
    async def axe_violations(page: Page) -> list[dict]:
        """axe-core's serious and critical findings (axe from admin/node_modules; injected over
        DevTools, so the page's CSP stays as it is)."""
        if not await page.evaluate("typeof window.axe === 'object'"):
            await page.evaluate(AXE.read_text())
        return await page.evaluate("""async (impacts) => {
            const result = await axe.run(document, { resultTypes: ['violations'] });
            return result.violations.filter((v) => impacts.includes(v.impact)).map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
        }""", list(BLOCKING_IMPACTS))


@contextlib.asynccontextmanager
async def admin_pages(endpoint: str, base_url: str):
    """AdminPages in the Chromium at `endpoint`; a page's error or foreign request fails it."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.connect_over_cdp(endpoint)
        pages = AdminPages(browser, base_url)
        try:
            yield pages
        finally:
            for context in pages.contexts:
                await context.close()
            await browser.close()
    assert not pages.problems, "\n".join(pages.problems)


@pytest_asyncio.fixture
async def admin(chromium_endpoint, base_url):
    async with admin_pages(chromium_endpoint, base_url) as pages:
        yield pages


@pytest_asyncio.fixture
async def camera(camera_endpoint, base_url):
    """AdminPages in a Chromium with a fake camera: the test module defines `camera_endpoint`
    (a module-scoped fixture over `camera_chromium`, showing the tag its tests scan)."""
    async with admin_pages(camera_endpoint, base_url) as pages:
        yield pages
