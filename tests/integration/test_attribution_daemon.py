"""Attribution in the daemon: a failed run's trace id, looked up in the fake
Cloud Logging API (tests/support/fake_logging.py names its sources), ends up
in the metric, /api/status and the log; a slow or failing Logging API leaves
the probe's own timing and the daemon alone."""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.probes import PROBE_KINDS
from monitor.redact import Redactor
from monitor.status import build_status
from monitor.tracecontext import CLOUD_TRACE
from tests.support.fake_logging import FakeLogging, lb_entry
from tests.support.http_servers import Served, serve_app

PROJECT = "demo-project"
METRIC = "monitor_http_failure_attribution_total"


@pytest.fixture
async def platform(fake_logging: FakeLogging) -> AsyncIterator[Served]:
    """A load balancer with no healthy backend: 502, and its request log entry
    carrying the trace id the client sent."""

    async def no_backend(request: web.Request) -> web.Response:
        trace_id = request.headers[CLOUD_TRACE].split("/")[0]
        fake_logging.add(lb_entry(PROJECT, trace_id, 502, "failed_to_pick_backend"))
        return web.Response(status=502, text="no healthy upstream")

    app = web.Application()
    app.router.add_get("/health", no_backend)
    async with serve_app(app) as served:
        yield served


async def start(tmp_path: Path, name: str, url: str, attribution: str = "") -> Daemon:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
global: {{interval: 30s, timeout: 2s}}
server: {{listen: "127.0.0.1:0"}}
probes:
  - {{name: web, kind: http, url: {url}/health}}
{attribution}
""")
    config = load_config(path, kinds=PROBE_KINDS)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()),
                    redactor=Redactor(config.secrets))
    await daemon.start()
    return daemon


def attribution_block(fake: FakeLogging, **extra: str) -> str:
    fields = {"project": PROJECT, "endpoint": fake.url, "delay": "10ms", **extra}
    return "attribution: {" + ", ".join(f"{k}: {v!r}" for k, v in fields.items()) + "}"


async def until(check: object, what: str) -> None:
    import asyncio

    for _ in range(250):  # bounded: 5 s
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


@pytest.mark.usefixtures("logging_metadata")
async def test_failed_run_is_attributed_in_metric_status_and_log(
        tmp_path: Path, fake_logging: FakeLogging, platform: Served) -> None:
    """A 502 of a load balancer without backends: the counter, /api/status
    and the log say lb:failed_to_pick_backend for that run's trace id."""
    daemon = await start(tmp_path, "one", platform.url, attribution_block(fake_logging))
    registry = daemon.metrics.registry

    def value(attribution: str) -> float | None:
        return registry.get_sample_value(METRIC, {"probe": "web", "kind": "http",
                                                  "attribution": attribution})
    try:
        assert value("lb:failed_to_pick_backend") == 0.0  # created up front
        with capture_logs() as logs:
            await daemon._run("web")
            await until(lambda: value("lb:failed_to_pick_backend") == 1.0, "no attribution")
        status = build_status(daemon.recorder, {}, daemon.redactor)
    finally:
        await daemon.stop()
    [failure] = status["recent_failures"]
    trace_id = failure["trace_id"]
    assert len(trace_id) == 32 and failure["attribution"] == "lb:failed_to_pick_backend"
    last = status["probes"][0]["last"]
    assert last["facts"]["trace_id"] == trace_id
    assert "failed_to_pick_backend" in last["facts"]["attribution_detail"]
    assert f"traces/{trace_id}" in fake_logging.calls[0]["filter"]
    events = {e["event"]: e for e in logs}
    assert events["probe failed"]["trace_id"] == trace_id
    assert events["failure attributed"]["attribution"] == "lb:failed_to_pick_backend"
    # The trace id is never a label.
    exposition = "\n".join(str(m) for m in registry.collect())
    assert trace_id not in exposition


@pytest.mark.usefixtures("logging_metadata")
@pytest.mark.parametrize("fail", ["hang", 500, 403])
async def test_a_slow_or_failing_logging_api_leaves_probe_timing_alone(
        tmp_path: Path, fake_logging: FakeLogging, platform: Served, fail: str | int) -> None:
    """Runs with lookups to a hanging (or erroring) Logging API take as long,
    by the probe's own durations, as runs of a daemon without attribution;
    the daemon keeps running and counts what it could not look up."""
    fake_logging.fail = fail
    plain = await start(tmp_path, "plain", platform.url)
    looked = await start(tmp_path, "looked", platform.url,
                         attribution_block(fake_logging,
                                           timeout="30s" if fail == "hang" else "2s",
                                           max_lookups_per_minute="10", queue_size="3"))
    without: list[float] = []
    with_lookups: list[float] = []
    try:
        for _ in range(20):  # interleaved, so drift of the machine hits both alike
            await plain._run("web")
            without.append(plain.recorder.probes["web"].ring[-1].duration)
            await looked._run("web")
            with_lookups.append(looked.recorder.probes["web"].ring[-1].duration)
        if fail == "hang":
            assert fake_logging.hanging >= 1  # lookups were in flight while the probe ran
        await looked._run("web")
        assert looked.ready and len(looked.recorder.probes["web"].ring) == 21
        # 21 failed runs, at most 10 lookups a minute (a hanging API also
        # fills the queue of 3 behind its 2 workers): the rest is counted.
        dropped = sum(looked.metrics.registry.get_sample_value(
            "monitor_attribution_dropped_total", {"cause": cause}) or 0.0
            for cause in ("rate_limited", "queue_full"))
        assert dropped >= 11
    finally:
        await plain.stop()
        await looked.stop()
    assert all(r.reason == "http_status" for r in looked.recorder.probes["web"].ring)
    slower = statistics.median(with_lookups) / statistics.median(without)
    # Same-run medians of the probe's own durations (a few ms each): noise
    # on 2 shared cores is well within this; an inline lookup would add its
    # whole timeout (2-30 s) to a run.
    assert slower < 1.5 or statistics.median(with_lookups) - statistics.median(without) < 0.003


@pytest.mark.usefixtures("logging_metadata")
async def test_reload_turns_attribution_on_and_off(
        tmp_path: Path, fake_logging: FakeLogging, platform: Served) -> None:
    """A reload that adds `attribution:` starts the lookups (with zero series
    for the probes that stay); one that removes it stops them."""
    daemon = await start(tmp_path, "reload", platform.url)
    plain = daemon.config_path.read_text()
    try:
        assert daemon.attributor is None
        daemon.config_path.write_text(plain + attribution_block(fake_logging) + "\n")
        assert await daemon.reload() == []
        assert daemon.attributor is not None
        assert daemon.metrics.registry.get_sample_value(
            METRIC, {"probe": "web", "kind": "http", "attribution": "run:no_instance"}) == 0.0
        await daemon._run("web")
        await until(lambda: daemon.metrics.registry.get_sample_value(
            METRIC, {"probe": "web", "kind": "http",
                     "attribution": "lb:failed_to_pick_backend"}) == 1.0, "no attribution")
        daemon.config_path.write_text(plain)
        assert await daemon.reload() == []
        assert daemon.attributor is None
        await daemon._run("web")  # failing runs go on without lookups
        assert len(fake_logging.calls) == 1
    finally:
        await daemon.stop()
