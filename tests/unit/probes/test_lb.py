"""`kind: lb` against plain aiohttp servers on 127.0.0.1 (haproxy: tests/integration)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from monitor.config.lb import LbProbeConfig
from monitor.probes.base import Result
from monitor.probes.lb import BackendLabels, LbProbe
from monitor.redact import Redactor
from monitor.runner import run_once


@asynccontextmanager
async def app_server(status: int = 200, served_by: str | None = "a",
                     host: str = "127.0.0.1", stall: asyncio.Event | None = None,
                     ) -> AsyncIterator[int]:
    async def handle(request: web.Request) -> web.Response:
        if stall is not None:
            await stall.wait()
        headers = {"x-served-by": served_by} if served_by else {}
        return web.Response(status=status, text="ok", headers=headers)

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def config(url: str, **fields: Any) -> LbProbeConfig:
    fields = {"requests": 4, "concurrency": 2, "backend_header": "x-served-by", **fields}
    return LbProbeConfig(name="edge", kind="lb", url=url, interval="30s",
                         timeout=fields.pop("timeout", "5s"), **fields)


async def run(probe: LbProbe) -> Result:
    return await run_once(probe, redactor=Redactor(), debug=True)


def samples(result: Result, metric: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for s in result.samples if s.metric == metric]


async def test_counts_every_response_by_code_origin_and_backend() -> None:
    """Each response is one monitor_http_responses_total and one backend sample."""
    async with app_server() as port:
        result = await run(LbProbe(config(f"http://127.0.0.1:{port}/")))
    assert result.ok, result.detail
    assert samples(result, "monitor_http_responses_total") == [
        ({"code": "200", "origin": "unclassified"}, 1.0)] * 4
    assert samples(result, "monitor_lb_backend_responses_total") == [
        ({"backend": "a", "code": "200"}, 1.0)] * 4
    assert result.facts["backends"] == {"a": {"200": 4}}


async def test_missing_backend_header_is_unknown() -> None:
    """A response without the backend header is counted as backend `unknown`."""
    async with app_server(served_by=None) as port:
        result = await run(LbProbe(config(f"http://127.0.0.1:{port}/", requests=1,
                                          concurrency=1)))
    assert samples(result, "monitor_lb_backend_responses_total") == [
        ({"backend": "unknown", "code": "200"}, 1.0)]


async def test_429_majority_fails_with_capacity() -> None:
    """All answers 429: the run fails with reason capacity, naming the backend."""
    async with app_server(status=429) as port:
        result = await run(LbProbe(config(f"http://127.0.0.1:{port}/")))
    assert (result.ok, result.reason) == (False, "capacity")
    assert "failing backends: a (4 x 429)" in result.detail


async def test_per_address_refused_address() -> None:
    """per_address over 127.0.0.1 (serving) and 127.0.0.2 (nothing listening)."""
    async with app_server() as port:
        with socket.socket() as probe_free:  # the port must be free on 127.0.0.2
            probe_free.bind(("127.0.0.2", port))

        async def hosts(host: str, port_: int, family: str) -> list[str]:
            return ["127.0.0.1", "127.0.0.2"]

        probe = LbProbe(config(f"http://two.test:{port}/", per_address=True, requests=2),
                        resolve=hosts)
        result = await run(probe)
    assert (result.ok, result.reason) == (False, "connect_refused")
    assert samples(result, "monitor_lb_address_success") == [
        ({"address": "0"}, 1.0), ({"address": "1"}, 0.0)]
    assert "1 (127.0.0.2): 2 of 2 failed (2 x connect_refused)" in result.detail
    assert result.facts["addresses"] == ["127.0.0.1", "127.0.0.2"]


async def test_per_address_caps_addresses() -> None:
    """Only the first max_addresses addresses are probed."""
    async with app_server() as port:
        async def hosts(host: str, port_: int, family: str) -> list[str]:
            return ["127.0.0.1"] * 5

        probe = LbProbe(config(f"http://many.test:{port}/", per_address=True, requests=1,
                               concurrency=1, max_addresses=2), resolve=hosts)
        result = await run(probe)
    assert result.ok, result.detail
    assert [labels for labels, _ in samples(result, "monitor_lb_address_success")] == [
        {"address": "0"}, {"address": "1"}]


async def test_requests_left_unsent_by_the_timeout_fail_the_run() -> None:
    """A stalled balancer: the run ends at its timeout with the rest counted as timeout."""
    stall = asyncio.Event()
    async with app_server(stall=stall) as port:
        try:
            result = await run(LbProbe(config(f"http://127.0.0.1:{port}/", timeout="300ms")))
        finally:
            stall.set()
    assert (result.ok, result.reason) == (False, "timeout")
    assert result.facts["failed"] == 4


def test_backend_labels_are_bounded() -> None:
    """The first `cap` values keep their names, the rest become `other`, for good."""
    labels = BackendLabels(cap=2)
    assert [labels.label(v) for v in ("a", "b", "c", "a", "d", None)] == [
        "a", "b", "other", "a", "other", "unknown"]
    assert labels.label("x" * 200) == "other"  # a third value, long or not
    assert len(labels.seen) == 2


@pytest.mark.parametrize(("fields", "field"), [
    pytest.param({"concurrency": 5, "requests": 4}, "concurrency", id="concurrency-over-requests"),
    pytest.param({"requests": 100, "per_address": True, "max_addresses": 8}, "requests",
                 id="per-run-cap"),
])
def test_cross_field_caps(fields: dict[str, Any], field: str) -> None:
    """Caps spanning fields are problems naming the field."""
    assert field in [f for f, _ in config("http://127.0.0.1/", **fields).problems()]
