"""tests/conftest.py: the shared fixtures do what the tests rely on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from monitor.config import ConfigError
from monitor.probes import build_probe
from tests.conftest import ProbeRunner


def test_probe_config_goes_through_the_loader(probe_config: Callable[..., Any]) -> None:
    """Cross-field checks of the loader apply (a model built directly would skip them)."""
    cfg = probe_config("tcp", target="127.0.0.1:7", interval="20s")
    assert (cfg.name, cfg.kind, cfg.interval, cfg.timeout) == ("tcp", "tcp", 20.0, 10.0)
    with pytest.raises(ConfigError, match="shorter than interval"):
        probe_config("tcp", target="127.0.0.1:7", interval="20s", timeout="20s")


async def test_run_probe_runs_the_real_runner_and_keeps_its_logs(
    probe_config: Callable[..., Any], run_probe: ProbeRunner, free_port: int,
) -> None:
    """A refused connect is classified by the probe and logged by the runner."""
    probe = build_probe(probe_config("tcp", target=f"127.0.0.1:{free_port}", timeout="2s"))
    result = await run_probe(probe)
    assert (result.ok, result.reason) == (False, "connect_refused")
    failed = [e for e in run_probe.logs if e["event"] == "probe failed"]
    assert len(failed) == 1
    assert failed[0]["reason"] == "connect_refused"
