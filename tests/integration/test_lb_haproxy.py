"""`kind: lb` through a real haproxy (TLS) in front of three aiohttp backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.config.lb import LbProbeConfig
from monitor.metrics import Metrics
from monitor.probes.base import Result
from monitor.probes.lb import LbProbe
from monitor.recorder import Recorder
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.haproxy import ADDRESSES, HOSTNAME, Haproxy, haproxy_lb

pytestmark = pytest.mark.external  # haproxy


@pytest.fixture
async def lb(tmp_path: Path) -> AsyncIterator[Haproxy]:
    async with haproxy_lb(tmp_path) as running:
        yield running


def config(lb: Haproxy, **fields: Any) -> LbProbeConfig:
    fields = {"url": lb.url, "requests": 9, "concurrency": 3, **fields}
    return LbProbeConfig(
        name="edge", kind="lb", interval="30s", timeout="10s",
        tls={"ca_file": str(lb.ca_file)}, backend_header="x-served-by", **fields,
    )


class Harness:
    """A probe with a recorder on its own registry, run as the daemon runs it."""

    def __init__(self, probe: LbProbe) -> None:
        self.probe = probe
        self.registry = CollectorRegistry()
        self.recorder = Recorder(Metrics(self.registry))
        self.recorder.register(probe.config, probe.registration_samples())

    async def run(self) -> Result:
        result = await run_once(self.probe, redactor=Redactor(), debug=True)
        self.recorder.record(result)
        return result

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"probe": "edge", "kind": "lb", **labels})


async def test_every_backend_answers(lb: Haproxy) -> None:
    """Round robin over fresh connections: each of the three backends answers a third."""
    harness = Harness(LbProbe(config(lb)))
    result = await harness.run()
    assert result.ok, result.detail
    for name in ("be-1", "be-2", "be-3"):
        assert harness.value("monitor_lb_backend_responses_total",
                             backend=name, code="200") == 3
    assert harness.value("monitor_http_responses_total", code="200", origin="unclassified") == 9
    assert [b.served for b in lb.pool] == [3, 3, 3]


async def test_backend_switched_to_503_is_reported_by_backend_and_code(lb: Haproxy) -> None:
    """One backend answering 503 fails the run; metrics and detail name it and the code."""
    lb.pool[1].status = 503
    harness = Harness(LbProbe(config(lb, max_error_ratio=0.1)))
    result = await harness.run()
    assert (result.ok, result.reason) == (False, "http_status")
    assert harness.value("monitor_lb_backend_responses_total", backend="be-2", code="503") == 3
    assert harness.value("monitor_lb_backend_responses_total", backend="be-1", code="200") == 3
    assert harness.value("monitor_http_responses_total", code="503", origin="unclassified") == 3
    assert "failing backends: be-2 (3 x 503)" in result.detail
    assert "be-1 (" not in result.detail


async def test_max_error_ratio_tolerates_a_share_of_errors(lb: Haproxy) -> None:
    """A third of the answers failing passes with max_error_ratio 0.4."""
    lb.pool[2].status = 502
    result = await Harness(LbProbe(config(lb, max_error_ratio=0.4))).run()
    assert result.ok, result.detail


async def test_backend_cap_holds_across_runs(lb: Haproxy) -> None:
    """With max_backends 2 the third backend is `other`, in the first run and the next."""
    harness = Harness(LbProbe(config(lb, max_backends=2)))
    for _ in range(2):
        result = await harness.run()
        assert result.ok, result.detail
    series = {dict(s.labels)["backend"]
              for metric in harness.registry.collect()
              if metric.name == "monitor_lb_backend_responses"
              for s in metric.samples}
    named = series - {"other"}
    assert len(named) == 2 and "other" in series
    # The same two names in both runs: each counted 3 + 3, the third backend 3 + 3 as other.
    for name in named:
        assert harness.value("monitor_lb_backend_responses_total", backend=name, code="200") == 6
    assert harness.value("monitor_lb_backend_responses_total", backend="other", code="200") == 6


async def test_per_address_shows_the_failing_address(lb: Haproxy) -> None:
    """A name on two loopback addresses: the one whose backend answers 503 reads 0."""
    lb.second.status = 503

    async def hosts(host: str, port: int, family: str) -> list[str]:
        assert host == HOSTNAME
        return list(ADDRESSES)

    probe = LbProbe(config(lb, url=lb.named_url, per_address=True, requests=3), resolve=hosts)
    harness = Harness(probe)
    result = await harness.run()
    assert (result.ok, result.reason) == (False, "http_status")
    assert harness.value("monitor_lb_address_success", address="0") == 1
    assert harness.value("monitor_lb_address_success", address="1") == 0
    assert "failing addresses: 1 (127.0.0.2): 3 of 3 failed (3 x 503)" in result.detail
    assert lb.second.served == 3 and sum(b.served for b in lb.pool) == 3
