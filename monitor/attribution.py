"""Who produced a failure: the platform's own log entry for the failed run's trace.

Every request of a probe run carries the run's trace id
(:mod:`monitor.tracecontext`); Google's external Application Load Balancer
and Cloud Run log each request with it in the ``trace`` field. With
``attribution:`` configured, a failed http, lb or journey run whose reason
says a request reached the service is looked up in Cloud Logging, ``delay``
after it ended (logs arrive late), and the answer is classified into one of
:data:`ATTRIBUTIONS`:

    lb:failed_to_pick_backend       the LB had no healthy backend to send to
    lb:backend_timeout              the backend did not answer within the LB's timeout
    lb:backend_connection_closed    the backend closed the connection before or
                                    during its answer
    lb:failed_to_connect_to_backend the LB could not connect to the backend
    lb:other                        another statusDetails the LB answered itself
    run:no_instance                 Cloud Run had no instance to take the request
                                    (429/500 "no available instance")
    run:request_timeout             Cloud Run ended the request at its timeout (504)
    app                             the entries show the service's own answer
    not_found                       no entry carries the trace id (yet)
    lookup_failed                   the Logging API could not be asked (credentials,
                                    HTTP error, timeout)

Guarantees: a lookup never fails or delays a run. ``submit`` only appends
to a bounded queue (full: the lookup is dropped and counted as
``queue_full``); lookups beyond ``max_lookups_per_minute`` are dropped and
counted as ``rate_limited``; the lookups themselves run in their own tasks,
each bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import structlog

from monitor.attribution_logging import LoggingClient, LookupFailed
from monitor.config.tracing import AttributionConfig
from monitor.metricspecs import HTTP_ATTRIBUTION
from monitor.probes.base import Result, Sample, zero

log = structlog.get_logger("monitor.attribution")

Attribution = Literal[
    "lb:failed_to_pick_backend",
    "lb:backend_timeout",
    "lb:backend_connection_closed",
    "lb:failed_to_connect_to_backend",
    "lb:other",
    "run:no_instance",
    "run:request_timeout",
    "app",
    "not_found",
    "lookup_failed",
]
ATTRIBUTIONS: tuple[str, ...] = get_args(Attribution)
DROPPED = ("queue_full", "rate_limited")
# Kinds whose failures are looked up: one request (http) or a few (lb,
# journey). A load or burst run is thousands of requests whose failures are
# the point of the test, and would exhaust the lookup budget in one run.
KINDS = frozenset({"http", "lb", "journey"})
# Reasons after which a request reached (or may have reached) the load
# balancer. dns, connect_*, tls and auth end before any request is logged.
REASONS = frozenset({"http_status", "capacity", "timeout", "connection_reset",
                     "protocol", "assertion"})
RESOURCE_TYPES = ("http_load_balancer", "cloud_run_revision")
LOOKUP_WORKERS = 2

# LB statusDetails (docs "External Application Load Balancer logging",
# "statusDetails" table) -> attribution. response_sent_by_backend and the
# client's own disconnects say nothing against the platform.
_LB_DETAILS: dict[str, Attribution] = {
    "failed_to_pick_backend": "lb:failed_to_pick_backend",
    "backend_timeout": "lb:backend_timeout",
    "backend_connection_closed_before_data_sent_to_client": "lb:backend_connection_closed",
    "backend_connection_closed_after_partial_response_sent": "lb:backend_connection_closed",
    "failed_to_connect_to_backend": "lb:failed_to_connect_to_backend",
}
_LB_NEUTRAL = frozenset({
    "response_sent_by_backend", "client_disconnected_before_any_response",
    "client_disconnected_after_partial_response", "client_timed_out",
    "backend_early_response_with_non_error_status",
})
# Cloud Run's own messages in its request log (Cloud Run docs, "Troubleshoot
# Cloud Run issues": 429/500 and 504).
_RUN_TEXTS: tuple[tuple[str, Attribution], ...] = (
    ("no available instance", "run:no_instance"),
    ("maximum request timeout", "run:request_timeout"),
)
# Most telling first: the platform's own verdicts, then the service's answer.
_RANK = {name: rank for rank, name in enumerate(ATTRIBUTIONS)}


def trace_filter(project: str, trace_id: str, started_at: float, window: float) -> str:
    """The entries:list filter: this trace's request entries of the LB and Cloud Run."""
    since = _rfc3339(started_at - 60)  # clocks of the probe and Google differ a little
    until = _rfc3339(started_at + window)
    types = " OR ".join(f'resource.type="{t}"' for t in RESOURCE_TYPES)
    return (f'trace="projects/{project}/traces/{trace_id}" AND ({types}) '
            f'AND timestamp>="{since}" AND timestamp<="{until}"')


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def classify(entries: list[dict[str, Any]]) -> tuple[Attribution, str]:
    """The most telling attribution among ``entries`` and a short why."""
    best: tuple[Attribution, str] | None = None
    for entry in entries:
        found = _one(entry)
        if found is not None and (best is None or _RANK[found[0]] < _RANK[best[0]]):
            best = found
    if best is not None:
        return best
    if entries:
        return "app", f"{len(entries)} entries, none from the platform itself"
    return "not_found", "no log entry carries the trace id"


def _one(entry: dict[str, Any]) -> tuple[Attribution, str] | None:
    resource = entry.get("resource")
    kind = resource.get("type") if isinstance(resource, dict) else None
    request = entry.get("httpRequest")
    status = request.get("status") if isinstance(request, dict) else None
    code = f" ({status})" if isinstance(status, int) else ""
    if kind == "http_load_balancer":
        payload = entry.get("jsonPayload")
        details = payload.get("statusDetails") if isinstance(payload, dict) else None
        if not isinstance(details, str):
            return None
        details = details[:80]
        if details in _LB_DETAILS:
            return _LB_DETAILS[details], f"load balancer: {details}{code}"
        if details in _LB_NEUTRAL:
            return ("app", f"load balancer: {details}{code}") \
                if details == "response_sent_by_backend" else None
        return "lb:other", f"load balancer: {details}{code}"
    if kind == "cloud_run_revision":
        text = entry.get("textPayload")
        if isinstance(text, str):
            lowered = text.lower()
            for needle, attribution in _RUN_TEXTS:
                if needle in lowered:
                    return attribution, f"cloud run: {text[:120]}{code}"
        if isinstance(status, int):
            return "app", f"cloud run: the revision answered{code}"
    return None


@dataclass(frozen=True)
class Lookup:
    probe: str
    kind: str
    trace_id: str
    started_at: float
    due: float  # monotonic


# attributed(probe, trace_id, attribution, detail); dropped(cause)
Attributed = Callable[[str, str, str, str], None]
Dropped = Callable[[str], None]


def wanted(result: Result) -> bool:
    """A failed run that attribution looks up."""
    return (not result.ok and result.kind in KINDS and result.reason in REASONS
            and isinstance(result.facts.get("trace_id"), str))


def zero_series(kind: str) -> list[Sample]:
    """The attribution counter at zero for every value (rate() needs a baseline)."""
    if kind not in KINDS:
        return []
    return [zero(HTTP_ATTRIBUTION, attribution=a) for a in ATTRIBUTIONS]


class Attributor:
    """The bounded queue of lookups and the tasks that work it off."""

    def __init__(self, config: AttributionConfig, *, attributed: Attributed,
                 dropped: Dropped, client: LoggingClient | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._attributed = attributed
        self._dropped = dropped
        self._client = client or LoggingClient(config.endpoint)
        self._clock = clock
        self._queue: asyncio.Queue[Lookup] = asyncio.Queue(config.queue_size)
        self._accepted: deque[float] = deque()
        self._workers: list[asyncio.Task[None]] = []
        self.lookups = 0  # sent to the Logging API (tests, debugging)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"attribution-{i}")
                         for i in range(LOOKUP_WORKERS)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await self._client.close()

    def submit(self, result: Result) -> None:
        """Queue the lookup of a failed run; never blocks, never raises."""
        if not wanted(result):
            return
        now = self._clock()
        while self._accepted and self._accepted[0] <= now - 60:
            self._accepted.popleft()
        if len(self._accepted) >= self.config.max_lookups_per_minute:
            self._dropped("rate_limited")
            return
        lookup = Lookup(result.probe, result.kind, result.facts["trace_id"],
                        result.started_at, now + self.config.delay)
        try:
            self._queue.put_nowait(lookup)
        except asyncio.QueueFull:
            self._dropped("queue_full")
            return
        self._accepted.append(now)

    async def _work(self) -> None:
        while True:
            lookup = await self._queue.get()
            wait = lookup.due - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                attribution, detail = await self.lookup(lookup)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug of ours must not end the worker
                log.exception("attribution lookup raised")
                attribution, detail = "lookup_failed", f"internal error: {type(exc).__name__}"
            with contextlib.suppress(Exception):
                self._attributed(lookup.probe, lookup.trace_id, attribution, detail)
            log.info("failure attributed", probe=lookup.probe, trace_id=lookup.trace_id,
                     attribution=attribution, detail=detail)

    async def lookup(self, lookup: Lookup) -> tuple[str, str]:
        config = self.config
        log_filter = trace_filter(config.project, lookup.trace_id, lookup.started_at,
                                  config.window)
        self.lookups += 1
        try:
            async with asyncio.timeout(config.timeout):
                entries, _ = await self._client.list_entries(
                    config.project, log_filter, page_size=config.page_size,
                    max_pages=config.max_pages)
        except TimeoutError:
            return "lookup_failed", f"no answer from Cloud Logging within {config.timeout:g}s"
        except LookupFailed as failed:
            return "lookup_failed", str(failed)
        return classify(entries)
