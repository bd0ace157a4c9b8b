"""The status page with 1000 probes, in headless Chromium: one page of 50 rows,
worst first, a name filter and paging (the daemon is a real `monitor run`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.browser import browser_page, chromium_available
from tests.support.daemon_process import RunningDaemon, free_port, run_daemon
from tests.support.http_servers import Served, serve_app

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.external,
    pytest.mark.skipif(not chromium_available(),
                       reason="needs Debian's chromium (apt-get install chromium)"),
]
PROBES = 1000
REFUSED = 40  # probes of a closed port: they fail and must come first


@pytest.fixture
async def target() -> AsyncIterator[Served]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    async with serve_app(app) as served:
        yield served


@pytest.fixture
async def daemon(tmp_path: Path, target: Served) -> AsyncIterator[RunningDaemon]:
    closed = free_port()  # nothing listens there
    port = free_port()
    probes = "".join(
        f"  - {{name: svc-{i:04d}, kind: http, "
        f"url: 'http://127.0.0.1:{closed if i < REFUSED else target.port}/'}}\n"
        for i in range(PROBES))
    config = tmp_path / "monitor.yaml"
    config.write_text(f"global: {{interval: 10s, timeout: 2s}}\n"
                      f"server: {{listen: '127.0.0.1:{port}'}}\nprobes:\n{probes}")
    async with run_daemon(config, port) as running:
        yield running


async def wait_all_ran(daemon: RunningDaemon) -> dict[str, object]:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(daemon.base + "/api/status?limit=1") as response:
                status: dict[str, object] = await response.json()
            counts = status["counts"]
            assert isinstance(counts, dict)
            if counts["unknown"] == 0:
                return status
            await asyncio.sleep(0.5)
    raise AssertionError("not every probe ran within 60 s")


async def test_thousand_probes_one_page_worst_first_filter_and_paging(
        daemon: RunningDaemon) -> None:
    """50 rows of 1000, the refused probes on top; the name filter finds one probe;
    Next shows the following 50; the layer card lists 5 failing names, not 40."""
    status = await wait_all_ran(daemon)
    assert status["total"] == PROBES
    async with browser_page() as page:
        await page.goto(daemon.base + "/")
        await page.wait_for_function(
            "document.querySelectorAll('#probes tr').length === 50", timeout=30_000)
        first = await page.locator("#probes tr").first.get_attribute("data-probe")
        assert first is not None and int(first.removeprefix("svc-")) < REFUSED
        assert "of 1000" in await page.locator("#shown").inner_text()
        layers = await page.locator("#layers").inner_text()
        assert "and 35 more" in layers

        await page.locator("#next").click()
        await page.wait_for_function(
            "document.querySelector('#shown').innerText.startsWith('probes 51–100')",
            timeout=10_000)
        assert await page.locator("#probes tr").count() == 50

        await page.locator("#q").fill("svc-0777")
        await page.wait_for_function(
            "document.querySelectorAll('#probes tr').length === 1", timeout=10_000)
        row = page.locator('tr[data-probe="svc-0777"]')
        assert "success" in await row.inner_text()
        assert "of 1 matching (1000 in all)" in await page.locator("#shown").inner_text()
