"""`kind: burst`: ramps of concurrent connections to find a path's knee."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from monitor.config.common import ProbeBase, PublicQuery, TLSOptions, url_label
from monitor.config.http import Headers, HttpUrl, Status, status_expected
from monitor.config.net import IpFamily
from monitor.config.tracing import TraceContextConfig
from monitor.config.types import Duration, HostPort, Ratio, format_duration, parse_duration

# Caps: a burst probe must never become the outage it looks for. A VPC
# connector (2-10 e2-micro..e2-standard-4 VMs) carries a few hundred
# concurrent connections; steps beyond 200 test the daemon, not the path.
MAX_STEP = 200
MAX_STEPS = 10
MAX_CONNECTIONS_PER_RUN = 1000
# Averaged over the interval: with the per-run cap this sets the interval
# floor (1000 connections per run -> at least 5 minutes between runs).
MAX_CONNECTIONS_PER_MINUTE = 200
# Echoed per connection; 1 MiB x 200 connections is already 400 MiB on the wire.
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_BYTES_PER_RUN = 64 * 1024 * 1024
# Time after the last step for closing sockets and the bookkeeping.
TIMEOUT_MARGIN = 1.0


class BurstProbeConfig(ProbeBase):
    kind: Literal["burst"]
    # Exactly one of target (TCP echo) and url (one HTTP request per connection).
    target: HostPort | None = None
    url: HttpUrl | None = None
    public_query: PublicQuery = ()  # url mode: query parameters shown as they are
    # target mode: bytes written and read back on every connection (0: connect only).
    payload_bytes: Annotated[int, Field(ge=0, le=MAX_PAYLOAD_BYTES)] = 4096
    # url mode: a GET (or HEAD) per connection; ok = a status in expect_status
    # (empty: any 2xx). A burst is about the path, so no bodies, no redirects.
    method: Literal["GET", "HEAD"] = "GET"
    headers: Headers = Field(default_factory=dict)  # checked as for every HTTP kind
    tls: TLSOptions = TLSOptions()
    ip_family: IpFamily = "any"  # the run is pinned to the first address of this family
    trace_context: TraceContextConfig = TraceContextConfig()  # url mode
    expect_status: tuple[Status, ...] = ()
    steps: Annotated[
        tuple[Annotated[int, Field(ge=1, le=MAX_STEP)], ...],
        Field(min_length=1, max_length=MAX_STEPS),
    ] = (10, 25, 50)
    slow_threshold: Duration = 1.0
    max_failure_ratio: Ratio = 0.05
    # The knee below which a run fails with `capacity` (default: the first step).
    min_capacity: Annotated[int, Field(ge=0)] | None = None
    # Each connection's connect + transfer must finish within this.
    step_timeout: Duration = 10.0

    min_interval: ClassVar[float] = 60.0
    global_timeout_fields: ClassVar[tuple[str, ...]] = ("step_timeout",)

    @classmethod
    def default_timeout(cls, data: dict[str, Any], global_timeout: float) -> str:
        """Every step may take its step_timeout, plus a margin for closing."""
        try:
            step = parse_duration(data.get("step_timeout", format_duration(global_timeout)))
            count = len(data.get("steps") or (10, 25, 50))
        except (ValueError, TypeError):
            return format_duration(global_timeout)  # the field's own error is reported
        return format_duration(round(step * count + TIMEOUT_MARGIN, 3))

    @property
    def effective_min_capacity(self) -> int:
        return self.steps[0] if self.min_capacity is None else self.min_capacity

    def info_target(self) -> str:
        return self.target or url_label(self.url or "")

    def problems(self) -> list[tuple[str, str]]:
        found = super().problems()
        if (self.target is None) == (self.url is None):
            found.append(("target", "give exactly one of target (TCP echo) and url (HTTP)"))
        steps = self.steps
        if any(b <= a for a, b in itertools.pairwise(steps)):
            found.append(("steps", "steps must be strictly increasing"))
        total = sum(steps)
        if total > MAX_CONNECTIONS_PER_RUN:
            found.append(("steps", (
                f"steps open {total} connections per run, more than the cap of "
                f"{MAX_CONNECTIONS_PER_RUN}")))
        floor = total * 60.0 / MAX_CONNECTIONS_PER_MINUTE
        if self.interval < floor:
            found.append(("interval", (
                f"interval ({format_duration(self.interval)}) must be at least "
                f"{format_duration(floor)} for {total} connections per run (cap: "
                f"{MAX_CONNECTIONS_PER_MINUTE} connections per minute)")))
        if self.target is not None and total * self.payload_bytes > MAX_BYTES_PER_RUN:
            found.append(("payload_bytes", (
                f"payload_bytes x connections per run ({total * self.payload_bytes}) exceeds "
                f"the cap of {MAX_BYTES_PER_RUN} bytes")))
        if self.min_capacity is not None and self.min_capacity > steps[-1]:
            found.append(("min_capacity", (
                f"min_capacity ({self.min_capacity}) is above the top step ({steps[-1]}): "
                "every run would fail")))
        if self.slow_threshold >= self.step_timeout:
            found.append(("slow_threshold", (
                f"slow_threshold ({format_duration(self.slow_threshold)}) must be shorter "
                f"than step_timeout ({format_duration(self.step_timeout)})")))
        needed = self.step_timeout * len(steps)
        if self.timeout < needed:
            found.append(("timeout", (
                f"timeout ({format_duration(self.timeout)}) is shorter than step_timeout x "
                f"steps ({format_duration(needed)}): the ramp could never finish")))
        if self.target is not None and (self.headers or self.expect_status):
            found.append(("target", "headers and expect_status apply to url mode only"))
        return found

    def ok_status(self, code: int) -> bool:
        return status_expected(self.expect_status, code)
