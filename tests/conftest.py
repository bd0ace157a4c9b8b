"""Fixtures every test directory shares (helpers behind them live in tests/support/).

- ``free_port``: a loopback port nothing listens on.
- ``certs``: a throwaway trustme CA with server contexts and ``ca_file``.
- ``probe_config``: ``probe_config("http", url=...)`` builds a probe config
  through the real loader (tests/support/configs.py).
- ``run_probe``: ``await run_probe(probe)`` runs it once through the real
  runner; ``run_probe.logs`` holds the log events of every run so far.
- marker ``external``: the test needs a binary outside Python (PostgreSQL,
  MariaDB, haproxy, nginx, Prometheus, Alertmanager, Chromium, promtool, amtool);
  ``pytest -m "not external"`` runs the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.probes.base import Probe, Result
from tests.support import configs, ports, running
from tests.support.http_servers import Certs


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
