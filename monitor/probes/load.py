"""`kind: load`: a bounded open-loop load test.

One run sends ``rate x duration`` requests on a fixed schedule: request i
is due at ``start + i / rate`` (:func:`schedule`), whether or not earlier
ones have been answered (an open loop), each on a fresh connection. The
latency of a request is measured from its *intended* send time, so a server
that stalls cannot hide the stall by slowing the sender down (coordinated
omission): a request that had to wait for a free slot (``max_in_flight``)
or for a late event loop carries that wait in its latency.

Every request is counted in ``monitor_load_requests_total{code}``, where
``code`` is the status, or the failure reason when no response came
(``timeout``, ``connect_refused``, ...: a fixed list). Responses are
observed in ``monitor_load_latency_seconds``. ``monitor_load_active`` is 1
from the first request to the end of the run (set live through the
runner, so rules can exclude our own load while it runs) and 0 after.
The result's facts carry the achieved rate and latency quantiles.

Cancellation (SIGTERM, a reload) stops the run at once: no further request
is sent and every in-flight request is cancelled and its socket closed.

The run fails when the share of failed requests (no response, or a status
outside ``expect_status``, default 2xx) exceeds ``max_error_ratio``, with
the most common cause as reason: ``capacity`` (429), ``http_status``
(other statuses) or the transport reason (``timeout``, ``connect_refused``,
``connect_timeout``, ``connection_reset``, ``tls``, ``dns``, ``protocol``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import structlog

from monitor.config.load import LoadProbeConfig
from monitor.gcp.tokens import with_id_token
from monitor.metricspecs import LOAD_ACTIVE, LOAD_LATENCY, LOAD_REQUESTS
from monitor.net.fetch import fetch, request_of
from monitor.probes.base import (
    INITIAL_CODES,
    Probe,
    ProbeFailure,
    Reason,
    Result,
    RunContext,
    Sample,
    initial,
    zero,
)
from monitor.tracecontext import start_trace

log = structlog.get_logger("monitor.probes.load")


def schedule(rate: float, duration: float) -> list[float]:
    """Intended send times, in seconds from the start: i / rate for i < rate x duration."""
    return [i / rate for i in range(round(rate * duration))]


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class LoadProbe(Probe[LoadProbeConfig]):
    config: LoadProbeConfig
    phase_metric = None

    def __init__(self, config: LoadProbeConfig) -> None:
        super().__init__(config)
        self._request = request_of(config)

    def initial_samples(self) -> list[Sample]:
        return [*(zero(LOAD_REQUESTS, code=code) for code in INITIAL_CODES),
                zero(LOAD_LATENCY), initial(LOAD_ACTIVE, 0.0)]

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        slots = asyncio.Semaphore(config.max_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        codes: Counter[str] = Counter()
        failures: Counter[Reason] = Counter()
        latencies: list[float] = []
        send_lag = 0.0
        sent = 0
        trace = start_trace(ctx, config.trace_context)  # one trace, a span per request

        async def one(intended: float) -> None:
            try:
                # Per request: a load test can outlive a token; a cached one is a lookup.
                request = trace.apply(await with_id_token(self._request, config.auth))
                response = await fetch(
                    request, timeout=config.request_timeout, tls=config.tls,
                    max_redirects=config.max_redirects, max_body_bytes=config.max_body_bytes,
                    ip_family=config.ip_family, http_versions=config.http_versions,
                    proxy=config.proxy_url, no_proxy=config.no_proxy)
            except ProbeFailure as failure:
                codes[failure.reason] += 1
                failures[failure.reason] += 1
                return
            except Exception:  # a bug of ours: counted, not lost in a task
                log.exception("load request raised")
                codes["error"] += 1
                failures["error"] += 1
                return
            finally:
                slots.release()
            latency = time.monotonic() - intended
            latencies.append(latency)
            ctx.observe(LOAD_LATENCY, latency)
            codes[str(response.status)] += 1
            if not config.status_ok(response.status):
                failures["capacity" if response.status == 429 else "http_status"] += 1

        ctx.live_set(LOAD_ACTIVE, 1)
        # time.monotonic, not loop.time: uvloop's is the time the loop
        # iteration began, in whole milliseconds (a p99 of exactly 55.00 ms).
        start = time.monotonic()
        last_send = start
        try:
            for offset in schedule(config.rate, config.duration):
                intended = start + offset
                # Again when woken early (uvloop's timers round to milliseconds);
                # a deadline, not a condition another task sets: no Event.
                while (delay := intended - time.monotonic()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(delay)
                await slots.acquire()  # bounded sockets; the wait counts in latency
                last_send = time.monotonic()
                send_lag = max(send_lag, last_send - intended)
                task = asyncio.create_task(one(intended))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                sent += 1
            if in_flight:
                await asyncio.wait(set(in_flight))  # each bounded by request_timeout
        finally:
            # Cancelled (SIGTERM, reload) or done: nothing may outlive the run.
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            ctx.live_set(LOAD_ACTIVE, 0)
        ctx.set(LOAD_ACTIVE, 0)
        for code, count in codes.items():
            ctx.inc(LOAD_REQUESTS, count, code=code)

        window = last_send - start + 1 / config.rate
        achieved = sent / window
        latencies.sort()
        failed = sum(failures.values())
        ratio = failed / sent if sent else 0.0
        ctx.facts.update({
            "requests": sent,
            "failed": failed,
            "rate": config.rate,
            "achieved_rate": round(achieved, 3),
            "latency_p50_seconds": round(quantile(latencies, 0.5), 6),
            "latency_p99_seconds": round(quantile(latencies, 0.99), 6),
            "latency_max_seconds": round(latencies[-1], 6) if latencies else 0.0,
            "max_send_lag_seconds": round(send_lag, 6),
            "codes": dict(codes),
        })
        summary = (
            f"{sent} requests at {config.rate:g}/s (achieved {achieved:.2f}/s): "
            + ", ".join(f"{n} x {c}" for c, n in codes.most_common())
            + f"; latency from intended send p50 {quantile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {quantile(latencies, 0.99) * 1000:.1f} ms"
        )
        ctx.trace(summary + f"; max send lag {send_lag * 1000:.1f} ms")
        if ratio > config.max_error_ratio:
            reason = failures.most_common(1)[0][0]
            return ctx.failure(reason, f"{failed} of {sent} requests failed (ratio {ratio:.3f} > "
                                       f"max_error_ratio {config.max_error_ratio:g}); {summary}")
        return ctx.success(summary)


__all__: list[Any] = ["LoadProbe", "quantile", "schedule"]
