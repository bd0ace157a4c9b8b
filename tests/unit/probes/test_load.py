"""`kind: load`: the schedule as data, and runs against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from monitor.config.load import LoadProbeConfig
from monitor.config.loader import parse_config
from monitor.metrics import Metrics
from monitor.probes import PROBE_KINDS
from monitor.probes.base import Result, RunContext, Sample
from monitor.probes.load import LoadProbe, quantile, schedule
from monitor.recorder import Recorder
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.faultproxy import client_sockets, wait_for


@dataclass
class Server:
    port: int = 0
    received: int = 0
    status: int = 200
    stall_first: float = 0.0  # seconds the first request is held (the injected fault)
    gate: asyncio.Event | None = None  # every request waits for it, when set
    in_handler: int = 0
    events: list[str] = field(default_factory=list)


@asynccontextmanager
async def server(**fields: Any) -> AsyncIterator[Server]:
    state = Server(**fields)

    async def handle(request: web.Request) -> web.Response:
        state.received += 1
        state.in_handler += 1
        try:
            if state.received == 1 and state.stall_first:
                await asyncio.sleep(state.stall_first)
            if state.gate is not None:
                await state.gate.wait()
        finally:
            state.in_handler -= 1
        return web.Response(status=state.status, text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    # handler_cancellation: a handler ends when its client goes away, so the
    # server side sees a cancelled run's connections close.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        if state.gate is not None:
            state.gate.set()
        await runner.cleanup()


def config(port: int, **fields: Any) -> LoadProbeConfig:
    fields = {"rate": 50, "duration": "400ms", "request_timeout": "2s", "timeout": "5s",
              "interval": "1h", **fields}
    return LoadProbeConfig(name="peak", kind="load", url=f"http://127.0.0.1:{port}/", **fields)


async def run(cfg: LoadProbeConfig, live: list[Sample] | None = None) -> Result:
    def record(probe: str, sample: Sample) -> None:
        assert live is not None
        live.append(sample)

    return await run_once(LoadProbe(cfg), redactor=Redactor(),
                          live=record if live is not None else None)


def latencies(result: Result) -> list[float]:
    return [s.value for s in result.samples if s.metric == "monitor_load_latency_seconds"]


def requests(result: Result) -> dict[str, float]:
    return {dict(s.labels)["code"]: s.value for s in result.samples
            if s.metric == "monitor_load_requests_total"}


@pytest.mark.parametrize(("rate", "duration", "count"), [
    pytest.param(20, 2.0, 40, id="20rps-2s"),
    pytest.param(0.5, 10.0, 5, id="slow-rate"),
    pytest.param(100, 300.0, 30_000, id="at-the-request-cap"),
    pytest.param(3, 1.0, 3, id="uneven-spacing"),
])
def test_schedule_is_evenly_spaced_and_complete(rate: float, duration: float,
                                                count: int) -> None:
    """rate x duration send times, the first at 0, each 1/rate after the previous."""
    times = schedule(rate, duration)
    assert len(times) == count
    assert times[0] == 0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(gap - 1 / rate) < 1e-9 for gap in gaps)
    assert times[-1] < duration


def test_quantile_nearest_rank() -> None:
    """p50 and p99 of 1..100 are 50 and 99; an empty list gives 0."""
    values = [float(v) for v in range(1, 101)]
    assert (quantile(values, 0.5), quantile(values, 0.99), quantile([], 0.5)) == (50, 99, 0)


async def test_sends_exactly_rate_times_duration() -> None:
    """20 requests for 50/s over 400 ms: the server sees 20, each counted and timed."""
    async with server() as srv:
        live: list[Sample] = []
        result = await run(config(srv.port), live)
    assert result.ok, result.detail
    assert srv.received == 20
    assert requests(result) == {"200": 20}
    assert len(latencies(result)) == 20
    assert result.facts["requests"] == 20
    # monitor_load_active went to 1 while running and back to 0, live.
    assert [(s.metric, s.value) for s in live] == [
        ("monitor_load_active", 1.0), ("monitor_load_active", 0.0)]


async def test_stall_shows_in_latency_from_intended_send_time() -> None:
    """A 300 ms stall with one request in flight: the requests queued behind it carry it."""
    stall = 0.3
    async with server(stall_first=stall) as srv:
        result = await run(config(srv.port, rate=20, duration="500ms", max_in_flight=1))
    assert result.ok, result.detail
    observed = latencies(result)  # in send order: one request in flight at a time
    assert len(observed) == 10
    # Request i was due at i/20 s but could not be sent before the first
    # answer came (>= 300 ms after the start): its latency is at least the
    # difference. Measured from the actual send it would be a few ms.
    for i in range(6):
        assert observed[i] >= stall - i / 20 - 0.001, (i, observed)
    assert result.facts["max_send_lag_seconds"] >= stall - 1 / 20 - 0.001


@pytest.mark.parametrize(("status", "reason"), [
    pytest.param(503, "http_status", id="503"),
    pytest.param(429, "capacity", id="429"),
])
async def test_error_statuses_fail_the_run(status: int, reason: str) -> None:
    """Over max_error_ratio of non-2xx fails with the most common cause."""
    async with server(status=status) as srv:
        result = await run(config(srv.port))
    assert (result.ok, result.reason) == (False, reason)
    assert requests(result) == {str(status): 20}


async def test_cancellation_stops_at_once_and_closes_every_socket() -> None:
    """Cancelled mid-run: no request sent after, no socket left, active back to 0."""
    async with server(gate=asyncio.Event()) as srv:
        live: list[Sample] = []
        ctx = RunContext("peak", "load", live=lambda probe, s: live.append(s))
        task = asyncio.create_task(LoadProbe(config(srv.port, rate=50, duration="2s")).run(ctx))
        assert await wait_for(lambda: srv.received >= 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        received = srv.received
        assert await wait_for(lambda: client_sockets(srv.port) == 0)
        assert await wait_for(lambda: srv.in_handler == 0)  # the server saw them go
        assert srv.received == received  # nothing sent after the cancel
        assert received < 100
    assert [s.value for s in live] == [1.0, 0.0]


def test_default_timeout_is_duration_plus_request_timeout() -> None:
    """Without a timeout: duration + the request timeout (global.timeout) + 1 s."""
    cfg = parse_config(
        "global: {timeout: 5s}\n"
        "probes: [{name: p, kind: load, url: 'http://127.0.0.1/', rate: 10, duration: 1m,"
        " interval: 1h}]\n", {}, kinds=PROBE_KINDS).probes[0]
    assert (cfg.request_timeout, cfg.timeout) == (5.0, 66.0)


@pytest.mark.parametrize(("fields", "field"), [
    pytest.param({"duration": "11m", "timeout": "12m", "interval": "2h"}, "duration",
                 id="duration-cap"),
    pytest.param({"rate": 100, "duration": "6m", "timeout": "7m", "interval": "2h"}, "rate",
                 id="requests-cap"),
    pytest.param({"duration": "10m", "timeout": "11m", "interval": "1h"}, "interval",
                 id="interval-10x-duration"),
    pytest.param({"duration": "1m", "timeout": "30s"}, "timeout", id="timeout-below-duration"),
    pytest.param({"interval": "2m", "timeout": "1m"}, "interval", id="interval-floor"),
])
def test_cross_field_caps(fields: dict[str, Any], field: str) -> None:
    """Caps spanning fields are problems naming the field."""
    assert field in [f for f, _ in config(1, **fields).problems()]


def test_rate_cap_is_a_field_error() -> None:
    """More than 200 req/s does not load."""
    with pytest.raises(ValidationError, match="less than or equal to 200"):
        config(1, rate=500)


async def test_active_gauge_reads_1_while_running_through_the_recorder() -> None:
    """Scraped mid-run, monitor_load_active is 1 (set live); after the run it is 0."""
    registry = CollectorRegistry()
    recorder = Recorder(Metrics(registry))
    async with server(gate=asyncio.Event()) as srv:
        cfg = config(srv.port, rate=20, duration="200ms")
        probe = LoadProbe(cfg)
        recorder.register(cfg, probe.registration_samples())
        labels = {"probe": "peak", "kind": "load"}
        assert registry.get_sample_value("monitor_load_active", labels) == 0
        task = asyncio.create_task(run_once(probe, redactor=Redactor(),
                                            on_result=recorder.record, live=recorder.live))
        assert await wait_for(lambda: srv.received >= 1)
        assert registry.get_sample_value("monitor_load_active", labels) == 1
        assert srv.gate is not None
        srv.gate.set()
        result = await task
    assert result.ok, result.detail
    assert registry.get_sample_value("monitor_load_active", labels) == 0
    assert registry.get_sample_value("monitor_load_requests_total",
                                     {**labels, "code": "200"}) == 4
