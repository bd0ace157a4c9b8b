"""One probe run through the real runner (``monitor.runner.run_once``).

Tests go through the same timeout, classification, redaction and logging
as the daemon and ``monitor check``; the log events are captured (with
``structlog.testing.capture_logs``), so a test can assert on them and the
output stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import Any

from structlog.testing import capture_logs

from monitor.probes.base import Probe, Result, Sample
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
