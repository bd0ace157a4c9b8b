"""`kind: burst`: how many concurrent connections does a path carry?

One run ramps through ``steps``: at each step it opens that many connections
at once and, on each, writes ``payload_bytes`` and reads them back from an
echo endpoint (``target``), or sends one HTTP request (``url``). Every
connection ends as

- ``ok``: connected and transferred within ``slow_threshold`` (connect +
  transfer, measured from the moment the step started it);
  ``monitor_burst_connect_duration_seconds`` is the TCP connect alone, from
  its syscall to the kernel's "connected", in both modes: the time a step's
  own connections wait for this process's CPU is not the path's;
- ``slow``: completed, but over ``slow_threshold``;
- ``failed``: refused, reset, closed early, a wrong echo, a status outside
  ``expect_status``;
- ``timeout``: not complete within ``step_timeout``.

A step passes when (failed + slow + timeout) / step <= ``max_failure_ratio``;
the first step that does not pass ends the ramp (a struggling path is never
pushed harder). The knee is the highest step that passed
(``monitor_burst_capacity_concurrency``, 0 when the first step failed);
``monitor_burst_ramp_complete`` is 1 when every step passed: then the knee
lies somewhere above the top step and is unknown. Every socket of a step is
closed before the next step starts, and all of them when the run ends or is
cancelled.

The host is resolved once per run (:mod:`monitor.net`, filtered by
``ip_family``) and the run pinned to its first address, so a step measures
the path, not the resolver. In url mode every connection goes to that
address with the URL's Host and SNI; redirects are not followed, and a
status outside
``expect_status`` (default 2xx) makes the connection ``failed``, with cause
``capacity`` for 429 (Cloud Run at max instances) or ``http_status``.

Failure reasons:

- ``capacity``: the knee is below ``min_capacity`` (default: the first
  step), while some connections did get through: the path is saturated.
  The detail gives the failing step and its outcomes by cause.
- ``error``: the daemon itself ran out of resources during a step (file
  descriptors, ...): no knee is reported, since it would be ours.
- ``dns`` (the target does not resolve; resolved once per run), and, when
  not a single connection of the run got through, the most common cause
  among them: ``connect_refused``, ``connect_timeout``,
  ``connection_reset``, ``timeout``, ``tls``, ``protocol``, ``http_status``
  (the path is down rather than saturated; the ``capacity`` alert would
  fire for the wrong reason).

A run never fails only because the ramp stopped above ``min_capacity``:
the knee is data for the ``min_capacity`` rule and the dashboards.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from monitor.config.burst import BurstProbeConfig
from monitor.config.common import mask_query
from monitor.config.http import header_items
from monitor.config.types import split_host_port
from monitor.metricspecs import BURST_CAPACITY, BURST_COMPLETE, BURST_CONNECT, BURST_CONNECTIONS
from monitor.net.connect import Progress, format_address, resolve_timed, tcp_connect
from monitor.net.errors import classify
from monitor.net.fetch import Request, fetch
from monitor.probes.base import Probe, ProbeFailure, Reason, Result, RunContext, Sample, zero
from monitor.probes.tcp import close_writer
from monitor.tracecontext import start_trace

OUTCOMES = ("ok", "slow", "failed", "timeout")
# url mode reads the answer only to finish the exchange; a health answer is small.
HTTP_BODY_BYTES = 1024 * 1024


# Connections of a step are begun this many per loop iteration. The loop sees
# a socket turn "connected" only between iterations: 200 begun in one
# iteration each waited for the CPU of all the others (connect p99 +9 ms
# against a step of 20, bench/daemon.py); in batches of 16 the wait is a
# batch's. The step still starts within a few milliseconds.
LAUNCH_BATCH = 16


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one connection of a step did."""

    outcome: str  # one of OUTCOMES
    reason: Reason | None  # why it failed or timed out
    connect: float | None  # seconds, when it connected
    total: float  # seconds from the start of the step
    note: str = ""  # a short description of the failure


@dataclass(frozen=True, slots=True)
class StepReport:
    step: int
    counts: dict[str, int]
    causes: dict[str, int]  # reason -> connections, over failed and timeout
    max_total: float
    notes: tuple[str, ...]

    @property
    def bad(self) -> int:
        return self.counts["failed"] + self.counts["slow"] + self.counts["timeout"]

    def summary(self) -> str:
        parts = [f"{self.counts[o]} {o}" for o in OUTCOMES if self.counts[o]]
        causes = ", ".join(f"{n} {r}" for r, n in sorted(self.causes.items(),
                                                         key=lambda kv: -kv[1]))
        text = f"step {self.step}: " + ", ".join(parts)
        if causes:
            text += f" ({causes})"
        return text


Connector = Callable[[float], Coroutine[Any, Any, Attempt]]


class BurstProbe(Probe[BurstProbeConfig]):
    config: BurstProbeConfig
    phase_metric = None

    def initial_samples(self) -> list[Sample]:
        # Every step x outcome exists at zero, so rate() has a baseline
        # before the first saturation.
        return [
            zero(BURST_CONNECT),
            *(zero(BURST_CONNECTIONS, step=str(step), outcome=outcome)
              for step in self.config.steps for outcome in OUTCOMES),
        ]

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        connector = await self._connector(ctx)
        capacity = 0
        failing: StepReport | None = None
        reports: list[StepReport] = []
        for step in config.steps:
            report = await self._step(ctx, step, connector)
            reports.append(report)
            ctx.trace(report.summary() + f"; slowest {report.max_total * 1000:.0f} ms")
            if report.causes.get("error"):
                # We ran out (file descriptors, ...): the knee would be ours, not the path's.
                note = next((n for n in report.notes if n.startswith("ours")), "")
                return ctx.failure("error", f"{report.summary()}; the ramp stopped: {note}")
            if report.bad / step > config.max_failure_ratio:
                failing = report
                break
            capacity = step
        complete = failing is None
        ctx.set(BURST_CAPACITY, capacity)
        ctx.set(BURST_COMPLETE, 1 if complete else 0)
        ctx.facts.update({
            "capacity": capacity,
            "ramp_complete": complete,
            "steps": [{"step": r.step, **r.counts} for r in reports],
        })
        return self._verdict(ctx, capacity, failing, reports)

    def _verdict(self, ctx: RunContext, capacity: int, failing: StepReport | None,
                 reports: list[StepReport]) -> Result:
        config = self.config
        if failing is None:
            return ctx.success(
                f"every step passed up to {config.steps[-1]}: the knee lies above it")
        through = sum(r.counts["ok"] + r.counts["slow"] for r in reports)
        if through == 0:
            causes: Counter[str] = Counter()
            for report in reports:
                causes.update(report.causes)
            # The causes are reasons of the connect classifier, counted as strings.
            reason = cast(Reason, causes.most_common(1)[0][0]) if causes else "error"
            note = failing.notes[0] if failing.notes else ""
            return ctx.failure(reason, f"no connection got through: {failing.summary()}"
                               + (f"; {note}" if note else ""))
        stopped = f"ramp stopped at {failing.summary()}"
        minimum = config.effective_min_capacity
        if capacity < minimum:
            return ctx.failure("capacity",
                               f"capacity {capacity} is below min_capacity {minimum}: {stopped}")
        return ctx.success(f"capacity {capacity}; {stopped}")

    async def _step(self, ctx: RunContext, step: int, connector: Connector) -> StepReport:
        """Open ``step`` connections at once; wait for all of them (bounded)."""
        tasks: list[asyncio.Task[Attempt]] = []
        async with asyncio.TaskGroup() as group:
            for i in range(step):
                if i and i % LAUNCH_BATCH == 0:
                    await asyncio.sleep(0)  # let the loop see the connects begun so far
                tasks.append(group.create_task(connector(time.monotonic())))
        attempts = [task.result() for task in tasks]
        counts = dict.fromkeys(OUTCOMES, 0)
        causes: Counter[str] = Counter()
        notes: list[str] = []
        for attempt in attempts:
            counts[attempt.outcome] += 1
            if attempt.connect is not None:
                ctx.observe(BURST_CONNECT, attempt.connect)
            if attempt.reason is not None:
                causes[attempt.reason] += 1
            if attempt.note and attempt.note not in notes and len(notes) < 3:
                notes.append(attempt.note)
        for outcome, count in counts.items():
            if count:
                ctx.inc(BURST_CONNECTIONS, count,
                        step=str(step), outcome=outcome)
        return StepReport(step=step, counts=counts, causes=dict(causes),
                          max_total=max(a.total for a in attempts),
                          notes=tuple(notes))

    # -- connecting ---------------------------------------------------------
    async def _connector(self, ctx: RunContext) -> Connector:
        """Resolve once per run, and return what one connection of a step does."""
        config = self.config
        if config.url is not None:
            parts = urlsplit(config.url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
        else:
            assert config.target is not None
            host, port = split_host_port(config.target)
        # The one resolver, once per run; the run is pinned to its first address
        # (a step measures the path, not the resolver).
        progress = Progress()
        try:
            async with asyncio.timeout(config.step_timeout):
                address = (await resolve_timed(host, port, progress, config.ip_family))[0]
        except TimeoutError:
            raise progress.timed_out(config.step_timeout) from None
        if config.url is not None:
            return self._http_connector(ctx, address)
        ctx.trace(f"target {format_address(address, port)}, {config.payload_bytes} bytes per "
                  "connection")
        payload = os.urandom(config.payload_bytes)

        async def connect(started: float) -> Attempt:
            return await echo_once((address, port), payload, started, config.step_timeout,
                                   config.slow_threshold)

        return connect

    def _http_connector(self, ctx: RunContext, address: str) -> Connector:
        """url mode: one request per connection, all to the address resolved
        once for the run (Host and SNI stay the URL's), no redirects."""
        config = self.config
        assert config.url is not None
        request = Request(url=config.url, method=config.method,
                          headers=header_items(config.headers),
                          public_query=frozenset(config.public_query))
        ctx.trace(f"url {mask_query(config.url, config.public_query)} via {address}")
        trace = start_trace(ctx, config.trace_context)  # one trace, a span per request

        async def connect(started: float) -> Attempt:
            try:
                response = await fetch(trace.apply(request), timeout=config.step_timeout,
                                       tls=config.tls,
                                       connect_address=address, max_redirects=0,
                                       max_body_bytes=HTTP_BODY_BYTES,
                                       progress=Progress(public_query=request.public_query,
                                                         stamp_connect=True))
            except ProbeFailure as failure:
                timed_out = failure.reason in ("timeout", "connect_timeout")
                return _done(started, None, "timeout" if timed_out else "failed",
                             failure.reason, failure.detail)
            total = time.monotonic() - started
            connected = response.phases.get("connect")
            if not config.ok_status(response.status):
                reason: Reason = "capacity" if response.status == 429 else "http_status"
                return Attempt("failed", reason, connected, total, f"status {response.status}")
            outcome = "slow" if total > config.slow_threshold else "ok"
            return Attempt(outcome, None, connected, total)

        return connect


async def echo_once(address: tuple[str, int], payload: bytes, started: float,
                    step_timeout: float, slow_threshold: float) -> Attempt:
    """One connection: connect, write ``payload``, read it back, close."""
    connect: float | None = None
    writer: asyncio.StreamWriter | None = None
    ok = False
    total = 0.0
    try:
        async with asyncio.timeout(step_timeout):
            try:
                progress = Progress(stamp_connect=True)  # 200 connects in flight
                reader, writer, _ = await tcp_connect([address[0]], address[1], progress)
            except ProbeFailure as refused:
                return _done(started, None, "failed", refused.reason, refused.detail)
            # The connect alone (as url mode's connect phase): from its syscall
            # to the kernel's "connected", not when this task got the loop back.
            connect = progress.phases["connect"]
            if payload:
                # The transport sends in the background while we read: a large
                # payload cannot deadlock against the echo.
                writer.write(payload)
                echoed = await reader.readexactly(len(payload))
                if echoed != payload:
                    return _done(started, connect, "failed", "protocol",
                                 "the echo differs from what was sent")
        total = time.monotonic() - started  # closing is not part of the measurement
        ok = True
    except TimeoutError:
        reason: Reason = "connect_timeout" if connect is None else "timeout"
        return _done(started, connect, "timeout", reason, f"{reason} after {step_timeout:g}s")
    except (OSError, asyncio.IncompleteReadError) as exc:
        failure = classify(exc, "receive", format_address(*address))
        return _done(started, connect, "failed", failure.reason, failure.detail)
    finally:
        if writer is not None:
            if ok:
                await close_writer(writer)
            else:
                writer.transport.abort()
    outcome = "slow" if total > slow_threshold else "ok"
    return Attempt(outcome, None, connect, total)


def _done(started: float, connect: float | None, outcome: str, reason: Reason,
          note: str) -> Attempt:
    return Attempt(outcome, reason, connect, time.monotonic() - started, note)


__all__: list[Any] = ["OUTCOMES", "Attempt", "BurstProbe", "echo_once"]
