"""Fixtures every test directory shares (helpers behind them live in tests/support/).

- ``free_port``: a loopback port nothing listens on.
- ``certs``: a throwaway trustme CA with server contexts and ``ca_file``.
- ``probe_config``: ``probe_config("http", url=...)`` builds a probe config
  through the real loader (tests/support/configs.py).
- ``run_probe``: ``await run_probe(probe)`` runs it once through the real
  runner; ``run_probe.logs`` holds the log events of every run so far.
- ``fake_logging``: the fake Cloud Logging API (tests/support/fake_logging.py);
  ``logging_metadata``: the fake metadata server, google-auth aimed at it,
  whose access tokens are the only ones ``fake_logging`` accepts (what the
  attribution tests look up with).
- marker ``external``: the test needs a binary outside Python (PostgreSQL,
  MariaDB, haproxy, nginx, Prometheus, Alertmanager, Chromium, promtool, amtool);
  ``pytest -m "not external"`` runs the rest.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.probes.base import Probe, Result
from tests.support import configs, ports, running
from tests.support.fake_logging import FakeLogging, logging_credentials, serve_fake_logging
from tests.support.http_servers import Certs
from tests.support.metadata import FakeMetadata


@pytest.fixture
def free_port() -> int:
    return ports.free_port()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


@pytest.fixture
def probe_config() -> Callable[..., Any]:
    return configs.probe_config


class ProbeRunner:
    """``await runner(probe, debug=...)``: one run through monitor.runner; logs kept."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    async def __call__(self, probe: Probe, **options: Any) -> Result:
        return await running.run_probe(probe, logs=self.logs, **options)


@pytest.fixture
def run_probe() -> ProbeRunner:
    return ProbeRunner()


@pytest.fixture
async def fake_logging() -> AsyncIterator[FakeLogging]:
    async with serve_fake_logging() as served:
        yield served


@pytest.fixture
async def logging_metadata(fake_logging: FakeLogging,
                           monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeMetadata]:
    async with logging_credentials(fake_logging, monkeypatch) as served:
        yield served


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under the test command (MONITOR_REQUIRE_EXTERNAL=1, also set by CI) an
    ``external`` test that skips (its binary is missing) fails instead: a run
    that silently skipped nginx or PostgreSQL tests would pass without them."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("external")
    required = marker is not None and not marker.kwargs.get("optional", False)
    if report.skipped and required and _external_required():
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = (f"required external binary missing (scripts/test.sh installs it): "
                           f"{reason}")


def _external_required() -> bool:
    return any(os.environ.get(name) for name in
               ("MONITOR_REQUIRE_EXTERNAL", "MONITOR_REQUIRE_DATABASES", "CI"))
