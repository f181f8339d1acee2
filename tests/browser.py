"""A real headless Chromium for the web pages: what a phone's browser would show."""

import asyncio
import shutil
import tempfile

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


async def rendered_dom(url: str, budget_ms: int = 5000) -> str:
    """The page's DOM after its scripts ran (virtual time: no waiting on the wall clock).

    Runs as a subprocess without blocking the event loop, so the server under
    test, on the same loop, keeps answering the browser.
    """
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Chromium is needed for the browser tests: apt-get install chromium"
    with tempfile.TemporaryDirectory() as profile:
        browser = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
            "--dump-dom", url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        dom, _ = await asyncio.wait_for(browser.communicate(), 60)
    assert browser.returncode == 0, f"chromium exited with {browser.returncode}"
    return dom.decode()
