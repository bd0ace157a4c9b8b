"""Trace headers on every probe request, so the platform's logs name the run.

One run is one trace: a fresh random 16-byte trace id per run and a fresh
8-byte span id per request of the run (redirect hops of one request share
it). Two headers carry them (``trace_context:`` of the probe turns each
off):

- W3C Trace Context (https://www.w3.org/TR/trace-context/):
  ``traceparent: 00-<32 hex trace id>-<16 hex span id>-<01 sampled | 00>``.
- Google's ``X-Cloud-Trace-Context: <32 hex trace id>/<span id as an
  unsigned decimal>;o=<1|0>`` (Cloud Trace docs, "Trace context"), which
  Google's external Application Load Balancer and Cloud Run copy into the
  ``trace`` field (``projects/P/traces/<trace id>``) of their request logs.

The trace id goes into the run's facts (``trace_id``): /api/status, the
status page and the log line show it, ``monitor.attribution`` looks it up.
It never becomes a metric label (one value per run).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar, cast

from monitor.config.tracing import TraceContextConfig
from monitor.probes.base import RunContext


class _HasHeaders(Protocol):
    # The client's frozen Request dataclass (not imported: the client may move).
    @property
    def headers(self) -> Sequence[tuple[str, str]]: ...


R = TypeVar("R", bound=_HasHeaders)

TRACEPARENT = "traceparent"
CLOUD_TRACE = "X-Cloud-Trace-Context"
_OURS = frozenset({TRACEPARENT, CLOUD_TRACE.lower()})
DEFAULT = TraceContextConfig()


def _nonzero(size: int) -> bytes:
    """Random bytes, never all zero (an all-zero id is invalid in W3C)."""
    while True:
        value = secrets.token_bytes(size)
        if any(value):
            return value


class RunTrace:
    """The trace of one run: its id, and headers with a fresh span per request."""

    def __init__(self, settings: TraceContextConfig = DEFAULT) -> None:
        self.settings = settings
        self.enabled = settings.w3c or settings.google
        self.trace_id = _nonzero(16).hex() if self.enabled else None

    def headers(self) -> list[tuple[str, str]]:
        """The trace headers of one request (a new span id each call)."""
        if self.trace_id is None:
            return []
        span = _nonzero(8)
        sampled = self.settings.sampled
        found: list[tuple[str, str]] = []
        if self.settings.w3c:
            found.append((TRACEPARENT,
                          f"00-{self.trace_id}-{span.hex()}-{'01' if sampled else '00'}"))
        if self.settings.google:
            found.append((CLOUD_TRACE, f"{self.trace_id}/{int.from_bytes(span)};"
                                       f"o={1 if sampled else 0}"))
        return found

    def apply(self, request: R) -> R:
        """``request`` (a dataclass with ``headers`` pairs) with this trace's
        headers, replacing any of the same name."""
        extra = self.headers()
        if not extra:
            return request
        # R is a dataclass with ``headers`` (net.fetch.Request), which a
        # TypeVar bound cannot say: replace() sees it as Any.
        changed = replace(cast(Any, request), headers=[
            *(pair for pair in request.headers if pair[0].lower() not in _OURS),
            *extra,
        ])
        return cast(R, changed)

    def update(self, headers: dict[str, str]) -> None:
        """Add this trace's headers to an aiohttp header dict (journey steps)."""
        for name in [n for n in headers if n.lower() in _OURS]:
            del headers[name]
        headers.update(self.headers())


def start_trace(ctx: RunContext, settings: TraceContextConfig = DEFAULT) -> RunTrace:
    """A new trace for the run of ``ctx``; its id lands in the run's facts."""
    trace = RunTrace(settings)
    if trace.trace_id is not None:
        ctx.facts["trace_id"] = trace.trace_id
    return trace
