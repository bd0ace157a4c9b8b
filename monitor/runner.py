"""Runs one probe once: timeout, timing, classification, logging.

Probes measure; this wrapper does the rest, the same way for every kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from monitor.probes.base import Probe, ProbeFailure, Result, RunContext, Sample
from monitor.redact import Redactor

log = structlog.get_logger("monitor.runner")

# Time the runner grants beyond the probe's own timeout before cancelling:
# a probe classifies its own timeouts precisely; this is the backstop.
GRACE_SECONDS = 1.0


async def run_once(
    probe: Probe[Any],
    *,
    redactor: Redactor,
    debug: bool = False,
    on_result: Callable[[Result], None] | None = None,
    live: Callable[[str, Sample], None] | None = None,
) -> Result:
    config = probe.config
    name, kind, timeout = config.name, config.kind, config.timeout
    ctx = RunContext(name, kind, debug=debug, phase_metric=probe.phase_metric, live=live)
    # bind/reset rather than the bound_contextvars() context manager: the
    # same, for less CPU on a path taken by every run.
    tokens = structlog.contextvars.bind_contextvars(
        probe=name, kind=kind, target=config.info_target(),
    )
    try:
        try:
            async with asyncio.timeout(timeout + GRACE_SECONDS):
                result = await probe.run(ctx)
        except ProbeFailure as failure:
            result = ctx.failure(failure.reason, failure.detail)
        except TimeoutError:
            result = ctx.failure("timeout", f"no result within the timeout ({timeout:g}s)")
        except Exception as exc:  # a bug of ours: keep the daemon alive, say so loudly
            log.exception("probe raised")
            result = ctx.failure("error", f"internal error: {type(exc).__name__}: {exc}")
        result.detail = redactor.text(result.detail)
        result.trace = [redactor.text(line) for line in result.trace]
        if result.ok:
            log.debug("probe succeeded", duration=round(result.duration, 4))
        else:
            log.info("probe failed", reason=result.reason, detail=result.detail,
                     duration=round(result.duration, 4), **_trace(result))
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    if on_result is not None:
        on_result(result)
    return result


def _trace(result: Result) -> dict[str, str]:
    """The trace id for the log line, where the run had one."""
    trace_id = result.facts.get("trace_id")
    return {"trace_id": trace_id} if isinstance(trace_id, str) else {}
