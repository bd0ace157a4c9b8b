"""The status page of a running `monitor demo`, in headless Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.browser import browser_page, chromium_available, screenshot
from tests.support.demo import RunningDemo, running_demo

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.external,
    pytest.mark.skipif(not chromium_available(),
                       reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture
async def demo() -> AsyncIterator[RunningDemo]:
    async with running_demo() as running:
        yield running


async def test_banner_and_row_follow_a_fault(demo: RunningDemo, tmp_path: Path) -> None:
    """Operational banner and a successful row; a 503 fault turns both red; screenshots saved."""
    async with browser_page() as page:
        await page.goto(demo.base + "/")
        banner = page.locator('[role="status"]')
        row = page.locator('tr[data-probe="backend-a-direct"]')
        await page.wait_for_function(
            "document.querySelector('[role=status]').className === 'operational'"
            " && document.querySelector('tr[data-probe=\"backend-a-direct\"]')"
            ".innerText.includes('success')",
            timeout=30_000,
        )
        assert (await banner.inner_text()).startswith("Verdict: operational")
        assert "success" in await row.inner_text()
        await screenshot(page, tmp_path / "operational.png")

        await demo.flip("backend-a", "503")
        await page.wait_for_function(
            "document.querySelector('tr[data-probe=\"backend-a-direct\"]')"
            ".innerText.includes('http_status')", timeout=30_000,
        )
        await page.wait_for_function(
            "document.querySelector('[role=status]').className === 'broken'", timeout=60_000,
        )
        assert "failing" in await banner.inner_text()
        assert "failure" in await row.inner_text()
        failures = await page.locator("#failures").inner_text()
        assert "backend-a-direct" in failures
        # Each failed http run shows the trace id its request carried.
        assert re.search(r"\b[0-9a-f]{32}\b", failures), failures
        await screenshot(page, tmp_path / "broken.png")
    assert (tmp_path / "operational.png").stat().st_size > 10_000
    assert (tmp_path / "broken.png").stat().st_size > 10_000


async def test_page_is_semantic(demo: RunningDemo) -> None:
    """A real table with column headers and a role=status banner, no external assets."""
    async with aiohttp.ClientSession() as session, session.get(demo.base + "/") as response:
        html = await response.text()
    assert 'role="status"' in html
    for header in ("Probe", "Kind", "Level", "Layer", "Last result", "Reason",
                   "Last duration", "Success (window)", "Latency"):
        assert f'<th scope="col">{header}</th>' in html
    assert not re.search(r"""(src|href)=["']https?://""", html)
