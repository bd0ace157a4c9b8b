"""The status page of a running `monitor demo`, in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.browser import browser_page, chromium_available, screenshot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium_available(),
                       reason="needs Debian's chromium (apt-get install chromium)"),
]


def free_port_pair() -> int:
    """A port P with P+1 free too (the demo's daemon and its fault switch)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port pair")


@pytest.fixture
async def demo() -> AsyncIterator[str]:
    """`monitor demo` as a user starts it; yields the daemon's base URL."""
    port = free_port_pair()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "demo", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(150):  # bounded: 15 s
                try:
                    async with session.get(f"{base}/-/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("monitor demo did not become ready in 15 s")
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def flip(base: str, backend: str, mode: str) -> None:
    control = re.sub(r":(\d+)$", lambda m: f":{int(m.group(1)) + 1}", base)
    async with aiohttp.ClientSession() as session, \
            session.post(f"{control}/fault/{backend}/{mode}") as response:
        assert response.status == 200


async def test_banner_and_row_follow_a_fault(demo: str, tmp_path: Path) -> None:
    """Operational banner and a successful row; a 503 fault turns both red; screenshots saved."""
    async with browser_page() as page:
        await page.goto(demo + "/")
        banner = page.locator('[role="status"]')
        row = page.locator('tr[data-probe="backend-a-direct"]')
        await page.wait_for_function(
            "document.querySelector('[role=status]').className === 'operational'"
            " && document.querySelectorAll('#probes tr td.state-ok').length > 0",
            timeout=30_000,
        )
        assert (await banner.inner_text()).startswith("Verdict: operational")
        assert "success" in await row.inner_text()
        await screenshot(page, tmp_path / "operational.png")

        await flip(demo, "backend-a", "503")
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
        await screenshot(page, tmp_path / "broken.png")
    assert (tmp_path / "operational.png").stat().st_size > 10_000
    assert (tmp_path / "broken.png").stat().st_size > 10_000


async def test_page_is_semantic(demo: str) -> None:
    """A real table with column headers and a role=status banner, no external assets."""
    async with aiohttp.ClientSession() as session, session.get(demo + "/") as response:
        html = await response.text()
    assert 'role="status"' in html
    for header in ("Probe", "Kind", "Level", "Layer", "Last result", "Reason",
                   "Last duration", "Success (window)", "Latency"):
        assert f'<th scope="col">{header}</th>' in html
    assert not re.search(r"""(src|href)=["']https?://""", html)
