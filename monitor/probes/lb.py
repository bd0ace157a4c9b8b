"""`kind: lb`: do all backends and all addresses behind a load balancer answer?

One run sends ``requests`` requests, ``concurrency`` at a time, each on a
fresh connection (so the balancer picks a backend for each). Every
response is counted in ``monitor_http_responses_total{code,origin}``; with
``backend_header`` it is also counted in
``monitor_lb_backend_responses_total{backend,code}``, where ``backend`` is
the header's value, at most ``max_backends`` distinct values per probe
(kept across runs: later newcomers are counted as ``other``; a response
without the header as ``unknown``). With ``per_address`` the host is
resolved (every A and AAAA record, sorted so that an index keeps meaning
the same address while DNS rotates, at most ``max_addresses``) and each
address gets ``requests`` requests with the URL's Host header and SNI;
``monitor_lb_address_success{address}`` (the index, not the IP) is 1 when
every request to that address succeeded.

A request fails when it gets no response (its transport reason) or a status
outside ``expect_status`` (default: any 2xx). The run fails when the share
of failed requests exceeds ``max_error_ratio``, with the most common cause
as reason:

- ``http_status``: non-2xx statuses (``capacity`` when most of them are 429);
- ``dns``, ``connect_refused``, ``connect_timeout``, ``tls``,
  ``connection_reset``, ``timeout``, ``protocol``: requests that got no
  response (as for ``kind: http``);
- ``timeout`` also when the run's timeout left requests unsent.

The detail names the failing backends (by header value) and addresses (by
index and IP).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from monitor.config.common import classify_origin
from monitor.config.lb import LbProbeConfig
from monitor.config.net import IpFamily
from monitor.gcp.tokens import with_id_token
from monitor.metricspecs import HTTP_RESPONSES, LB_ADDRESS_SUCCESS, LB_BACKEND_RESPONSES
from monitor.net.fetch import Request, Response, fetch, request_of
from monitor.net.resolve import resolve, sort_addresses
from monitor.probes.base import (
    Probe,
    ProbeFailure,
    Reason,
    Result,
    RunContext,
    Sample,
    response_series,
)
from monitor.tracecontext import start_trace

# Backend label values are cut to this length (they come from responses).
MAX_BACKEND_CHARS = 64
OTHER = "other"
UNKNOWN = "unknown"

Resolver = Callable[[str, int, IpFamily], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int, family: IpFamily = "any") -> list[str]:
    """Every address of ``host`` of ``family`` (the one resolver), IPv4 first,
    each sorted: an index keeps meaning the same address while DNS rotates."""
    return sort_addresses(await resolve(host, port, family))


class BackendLabels:
    """Header value -> bounded label value, remembered for the probe's life.

    The first ``cap`` distinct values keep their name, later ones become
    ``other``: the number of series stays bounded across runs, not only
    within one.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: dict[str, None] = {}

    def label(self, value: str | None) -> str:
        if value is None:
            return UNKNOWN
        value = value.strip()[:MAX_BACKEND_CHARS] or UNKNOWN
        if value in self.seen:
            return value
        if len(self.seen) < self.cap:
            self.seen[value] = None
            return value
        return OTHER


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request of a run."""

    index: int  # address index (0 without per_address)
    ok: bool
    status: int | None = None
    backend: str | None = None
    reason: Reason | None = None  # no response: the transport's reason
    detail: str = ""

    @property
    def cause(self) -> Reason:
        if self.reason is not None:
            return self.reason
        return "capacity" if self.status == 429 else "http_status"

    @property
    def what(self) -> str:
        return str(self.status) if self.status is not None else str(self.reason)


class LbProbe(Probe[LbProbeConfig]):
    config: LbProbeConfig
    phase_metric = None  # one run is many requests: phases would be sums

    def __init__(self, config: LbProbeConfig, resolve: Resolver | None = None) -> None:
        super().__init__(config)
        # Tests give a resolver that maps a name to several loopback addresses.
        self._resolve = resolve or resolve_addresses
        self.backends = BackendLabels(config.max_backends)
        self._request = request_of(config)

    def initial_samples(self) -> list[Sample]:
        return response_series(rule.name for rule in self.config.origins)

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout - ctx.elapsed()
        addresses = await self._addresses(ctx, deadline)
        # One token for the whole run (it is cached until shortly before expiry).
        request = await with_id_token(self._request, config.auth)
        trace = start_trace(ctx, config.trace_context)  # one trace, a span per request
        jobs = [(index, address) for _ in range(config.requests)
                for index, address in enumerate(addresses)]
        outcomes: list[Outcome] = []

        async def worker() -> None:
            while jobs:
                index, address = jobs.pop(0)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    outcomes.append(Outcome(index, False, reason="timeout",
                                            detail="not sent within the run's timeout"))
                    continue
                outcomes.append(await self._one(ctx, trace.apply(request), index, address,
                                                remaining))

        async with asyncio.TaskGroup() as group:
            for _ in range(min(config.concurrency, len(jobs))):
                group.create_task(worker())

        if config.per_address:
            for index in range(len(addresses)):
                mine = [o for o in outcomes if o.index == index]
                ctx.set(LB_ADDRESS_SUCCESS, 1 if all(o.ok for o in mine) else 0,
                        address=str(index))
        return self._verdict(ctx, outcomes, addresses)

    async def _addresses(self, ctx: RunContext, deadline: float) -> list[str | None]:
        """[None] (the client resolves), or every address of the host (capped)."""
        config = self.config
        if not config.per_address:
            return [None]
        parts = urlsplit(config.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout_at(deadline):
                found = await self._resolve(host, port, config.ip_family)
        except TimeoutError:
            raise ProbeFailure("dns", f"no answer from the resolver for {host}") from None
        except socket.gaierror as exc:
            raise ProbeFailure("dns", f"cannot resolve {host}: {exc.strerror or exc}") from None
        if not found:
            raise ProbeFailure("dns", f"{host} resolves to no address")
        if len(found) > config.max_addresses:
            ctx.trace(f"{host} has {len(found)} addresses, probing the first "
                      f"{config.max_addresses} (max_addresses)")
        kept: list[str | None] = list(found[: config.max_addresses])
        ctx.facts["addresses"] = kept
        ctx.trace(f"addresses of {host}: " + ", ".join(f"{i}={a}" for i, a in enumerate(kept)))
        return kept

    async def _one(self, ctx: RunContext, request: Request, index: int, address: str | None,
                   timeout: float) -> Outcome:
        config = self.config

        def count(response: Response) -> None:
            origin = classify_origin(config.origins, response.header_map)
            ctx.inc(HTTP_RESPONSES, code=str(response.status), origin=origin)

        started = time.monotonic()
        try:
            response = await fetch(
                request, timeout=timeout, tls=config.tls, connect_address=address,
                max_redirects=config.max_redirects, max_body_bytes=config.max_body_bytes,
                on_response=count, ip_family=config.ip_family,
                http_versions=config.http_versions, proxy=config.proxy_url,
                no_proxy=config.no_proxy,
            )
        except ProbeFailure as failure:
            ctx.trace(f"address {index}: {failure.reason}: {failure.detail}")
            return Outcome(index, False, reason=failure.reason, detail=failure.detail)
        backend = None
        if config.backend_header is not None:
            backend = self.backends.label(response.header(config.backend_header))
            ctx.inc(LB_BACKEND_RESPONSES, backend=backend, code=str(response.status))
        took = (time.monotonic() - started) * 1000
        ctx.trace(f"address {index}: HTTP/{response.http_version} {response.status} from "
                  f"{backend or '-'} via {response.address} in {took:.1f}ms")
        return Outcome(index, config.status_ok(response.status), status=response.status,
                       backend=backend)

    def _verdict(self, ctx: RunContext, outcomes: list[Outcome],
                 addresses: list[str | None]) -> Result:
        config = self.config
        total = len(outcomes)
        failed = [o for o in outcomes if not o.ok]
        ratio = len(failed) / total if total else 0.0
        by_backend: dict[str, Counter[str]] = {}
        for outcome in outcomes:
            if outcome.backend is not None:
                by_backend.setdefault(outcome.backend, Counter())[outcome.what] += 1
        ctx.facts.update({
            "requests": total,
            "failed": len(failed),
            "error_ratio": round(ratio, 4),
            "backends": {b: dict(c) for b, c in by_backend.items()},
        })
        codes = Counter(o.what for o in outcomes)
        summary = ", ".join(f"{n} x {what}" for what, n in codes.most_common())
        if ratio <= config.max_error_ratio:
            seen = f" from {len(by_backend)} backends" if by_backend else ""
            return ctx.success(f"{total} requests{seen}: {summary}")
        reason: Reason = Counter(o.cause for o in failed).most_common(1)[0][0]
        parts = [f"{len(failed)} of {total} requests failed (ratio {ratio:.2f} > "
                 f"max_error_ratio {config.max_error_ratio:g}): {summary}"]
        bad_backends = {b: c for b, c in by_backend.items()
                        if any(not config.status_ok(int(w)) for w in c if w.isdigit())}
        if bad_backends:
            parts.append("failing backends: " + "; ".join(
                f"{b} ({', '.join(f'{n} x {w}' for w, n in c.most_common())})"
                for b, c in sorted(bad_backends.items())))
        if config.per_address:
            bad = []
            for index, address in enumerate(addresses):
                mine = [o for o in outcomes if o.index == index]
                errors = [o for o in mine if not o.ok]
                if errors:
                    kinds = Counter(o.what for o in errors).most_common()
                    bad.append(f"{index} ({address}): {len(errors)} of {len(mine)} failed "
                               f"({', '.join(f'{n} x {w}' for w, n in kinds)})")
            parts.append("failing addresses: " + "; ".join(bad))
        transport = [o for o in failed if o.reason is not None]
        if transport:
            parts.append(f"e.g. {transport[0].detail}")
        return ctx.failure(reason, "; ".join(parts))
