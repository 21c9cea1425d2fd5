"""The dashboard in headless Chromium: live blocks, a mode change from a devnode fault."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from gateway_fakes import serve

from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.feed import BlockFeed
from blockfeed.gateway import GatewayOptions, create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard.png"
BLOCK_TIME_S = 0.25
WAIT_MS = 30_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (scripts/system-deps.sh)",
    ),
]


async def test_dashboard_shows_blocks_and_mode_change() -> None:
    """The page shows a new block live, switches its mode badge on a fault, and is screenshotted."""
    playwright_api = pytest.importorskip("playwright.async_api")
    async with AsyncExitStack() as exits:
        node = await exits.enter_async_context(
            DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=11))
        )
        feed = BlockFeed([node.ws_url], block_time_s=BLOCK_TIME_S, emoji=False, log_blocks=False)
        app = create_app(feed=feed, options=GatewayOptions(network="devnode"))
        url = await exits.enter_async_context(serve(app))
        playwright = await exits.enter_async_context(playwright_api.async_playwright())
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        exits.push_async_callback(browser.close)
        page = await browser.new_page(viewport={"width": 1360, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        await page.goto(f"{url}/")
        await page.wait_for_function(
            "document.querySelector('#mode-badge').dataset.mode === 'streaming'", timeout=WAIT_MS
        )
        await page.wait_for_function(
            "/^#[0-9,]+$/.test(document.querySelector('#last-block-number').textContent)",
            timeout=WAIT_MS,
        )
        first = _number(await page.text_content("#last-block-number"))
        await page.wait_for_function(
            f"Number(document.querySelector('#last-block-number').textContent"
            f".replace(/[#,]/g, '')) > {first}",
            timeout=WAIT_MS,
        )
        assert (await page.text_content("#epoch-label") or "").startswith("Block ")
        assert "/360" in (await page.text_content("#epoch-label") or "")

        node.faults.inject("restart", seconds=1.5)
        await page.wait_for_function(
            "['polling', 'disconnected'].includes("
            "document.querySelector('#mode-badge').dataset.mode)",
            timeout=WAIT_MS,
        )
        degraded = (await page.text_content("#mode-badge") or "").strip()
        assert degraded in ("POLLING", "DISCONNECTED")
        await page.wait_for_function(
            "document.querySelector('#mode-badge').dataset.mode === 'streaming'", timeout=WAIT_MS
        )
        restored = _number(await page.text_content("#last-block-number"))
        await page.wait_for_function(  # a few blocks on the restored socket, for the screenshot
            f"Number(document.querySelector('#last-block-number').textContent"
            f".replace(/[#,]/g, '')) > {restored + 4}",
            timeout=WAIT_MS,
        )
        assert await page.locator("#events tr").count() >= 1
        assert await page.locator("#timeline .seg").count() >= 2
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert errors == []
    assert SCREENSHOT.stat().st_size > 10_000


def _number(text: str | None) -> int:
    return int((text or "0").replace("#", "").replace(",", ""))
