"""Confirmation runs: after a failed run the next run comes half an interval later.

The alert rules page on four failed runs in a row (docs/alerting.md): that
fits in a minute only because a failure is confirmed at half the interval.
Both runs are recorded; nothing is retried inside a run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.demo.backends import Faults, backend_app
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.probes import PROBE_KINDS
from monitor.redact import Redactor
from monitor.scheduler import first_run_offset
from tests.support.http_servers import Served, serve_app


@pytest.fixture
async def backend() -> AsyncIterator[tuple[Served, Faults]]:
    faults = Faults()
    async with serve_app(backend_app("backend-a", faults)) as served:
        yield served, faults


async def started_daemon(tmp_path: Path, probes: str, interval: str) -> Daemon:
    path = tmp_path / "monitor.yaml"
    path.write_text(f"""
global: {{interval: {interval}, timeout: 500ms, jitter: 0}}
server: {{listen: "127.0.0.1:0"}}
probes:{probes}
""")
    config = load_config(path, kinds=PROBE_KINDS)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()),
                    redactor=Redactor(config.secrets))
    await daemon.start()
    return daemon


def next_run(daemon: Daemon, name: str) -> datetime:
    when = daemon.scheduler.next_run_time(name)
    assert when is not None
    return when


async def test_a_failed_run_brings_the_next_one_forward(
        tmp_path: Path, backend: tuple[Served, Faults]) -> None:
    """A failed run moves the next run to half an interval after it started;
    a successful one leaves the schedule alone."""
    # A name whose first run comes late in the interval, so that half an
    # interval from now is earlier than the next scheduled run.
    name = next(f"web-{i}" for i in range(1000) if first_run_offset(f"web-{i}", 20) > 15)
    probes = f"\n  - {{name: {name}, kind: http, url: '{backend[0].url}/health'}}"
    daemon = await started_daemon(tmp_path, probes, interval="20s")
    try:
        scheduled = next_run(daemon, name)
        await daemon._run(name)  # what the scheduler calls; the backend is fine
        assert next_run(daemon, name) == scheduled

        backend[1].set("backend-a", "503")
        before = datetime.now(UTC)
        await daemon._run(name)
        after = datetime.now(UTC)
        assert before + timedelta(seconds=10) <= next_run(daemon, name) \
            <= after + timedelta(seconds=10) < scheduled
        assert daemon.recorder.probes[name].ring[-1].reason == "http_status"
    finally:
        await daemon.stop()


async def test_the_confirmation_run_runs_and_is_recorded(
        tmp_path: Path, backend: tuple[Served, Faults]) -> None:
    """Under the real scheduler the early run happens (it is not skipped as an
    overlap), and both failed runs count in the metrics."""
    probes = f"\n  - {{name: web, kind: http, url: '{backend[0].url}/health'}}"
    backend[1].set("backend-a", "503")
    daemon = await started_daemon(tmp_path, probes, interval="2s")
    try:
        ring = daemon.recorder.probes["web"].ring
        deadline = time.monotonic() + 10
        while len(ring) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(ring) >= 3
        gaps = [b.started_at - a.started_at for a, b in zip(ring, list(ring)[1:], strict=False)]
        # Half of the 2 s interval between failed runs, never the whole interval.
        assert all(0.9 <= gap <= 1.5 for gap in gaps[:2]), gaps
        registry = daemon.metrics.registry
        labels = {"probe": "web", "kind": "http"}
        assert registry.get_sample_value("monitor_probe_skipped_total", labels) == 0
        assert registry.get_sample_value(
            "monitor_probe_runs_total", {**labels, "result": "failure"}) == len(ring)
        assert registry.get_sample_value(
            "monitor_probe_consecutive_failures", labels) == len(ring)
    finally:
        await daemon.stop()


async def test_capacity_kinds_never_run_early(tmp_path: Path) -> None:
    """burst (and load) keep their interval after a failure: their floors exist
    so that a capacity test cannot become the outage."""
    probes = """
  - name: echo
    kind: burst
    target: 127.0.0.1:9
    steps: [2]
    step_timeout: 500ms
    slow_threshold: 250ms
    interval: 1m"""
    daemon = await started_daemon(tmp_path, probes, interval="1m")
    try:
        scheduled = next_run(daemon, "echo")
        await daemon._run("echo")
        assert daemon.recorder.probes["echo"].ring[-1].ok is False
        assert next_run(daemon, "echo") == scheduled
    finally:
        await daemon.stop()
