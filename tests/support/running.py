"""One probe run through the real runner (``monitor.runner.run_once``).

Tests go through the same timeout, classification, redaction and logging
as the daemon and ``monitor check``; the log events are captured (with
``structlog.testing.capture_logs``), so a test can assert on them and the
output stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import Any

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from monitor.config import Config
from monitor.metrics import Metrics
from monitor.probes import build_probe
from monitor.probes.base import Probe, Result, Sample
from monitor.recorder import Recorder
from monitor.redact import Redactor
from monitor.runner import run_once


async def run_probe(probe: Probe, *, debug: bool = False, redactor: Redactor | None = None,
                    live: Callable[[str, Sample], None] | None = None,
                    logs: MutableSequence[dict[str, Any]] | None = None) -> Result:
    """Run ``probe`` once as the daemon does; its log events go to ``logs`` when given.

    The redactor is empty by default: the probe itself must keep secrets out.
    """
    with capture_logs() as captured:
        result = await run_once(probe, redactor=redactor or Redactor(),
                                debug=debug, live=live)
    if logs is not None:
        logs.extend(captured)
    return result


async def run_recorded(config: Config, redactor: Redactor, *, debug: bool = False,
                       logs: MutableSequence[dict[str, Any]] | None = None,
                       ) -> tuple[Recorder, list[Result]]:
    """Every probe of ``config`` once, in order, registered and recorded as the
    daemon does (a recorder on a registry of its own); log events to ``logs``."""
    recorder = Recorder(Metrics(CollectorRegistry()))
    results = []
    for probe_config in config.probes:
        probe = build_probe(probe_config)
        recorder.register(probe_config, probe.registration_samples())
        result = await run_probe(probe, debug=debug, redactor=redactor, logs=logs)
        recorder.record(result)
        results.append(result)
    return recorder, results
