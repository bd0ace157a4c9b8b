"""`kind: load`: a bounded open-loop load test."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from monitor.config.common import ProbeBase, url_label
from monitor.config.http import HttpRequestFields, status_expected
from monitor.config.types import Duration, format_duration, parse_duration

# Caps: a load test from the monitor must stay a measurement, never the
# outage. 200 req/s is several Cloud Run instances' worth of a light
# endpoint; one event loop sends it with room to spare (bench/load_schedule.py).
MAX_RATE = 200
MAX_DURATION = 600.0  # 10 minutes
MAX_REQUESTS_PER_RUN = 30_000
# Sockets open at once; beyond it a request waits for a slot (and its
# latency, measured from its intended send time, shows the wait).
MAX_IN_FLIGHT_CAP = 500
# At most this share of the time under load: interval >= duration x 10.
MIN_INTERVAL_FACTOR = 10
TIMEOUT_MARGIN = 1.0


class LoadProbeConfig(ProbeBase, HttpRequestFields):
    kind: Literal["load"]
    rate: Annotated[float, Field(gt=0, le=MAX_RATE)]
    duration: Duration
    # Each request's own timeout (default: global.timeout).
    request_timeout: Duration = 10.0
    max_in_flight: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT_CAP)] = 100
    # Statuses that count as success (empty: any 2xx).
    expect_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] = ()
    max_error_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01

    min_interval: ClassVar[float] = 300.0
    global_timeout_fields: ClassVar[tuple[str, ...]] = ("request_timeout",)

    @classmethod
    def default_timeout(cls, data: dict[str, Any], global_timeout: float) -> str:
        """The duration, plus the last request's timeout, plus a margin."""
        try:
            duration = parse_duration(data.get("duration"))
            request = parse_duration(data.get("request_timeout", format_duration(global_timeout)))
        except (ValueError, TypeError):
            return format_duration(global_timeout)  # the field's own error is reported
        return format_duration(round(duration + request + TIMEOUT_MARGIN, 3))

    def info_target(self) -> str:
        return url_label(self.url)

    @property
    def count(self) -> int:
        """Requests per run: rate x duration."""
        return round(self.rate * self.duration)

    def status_ok(self, code: int) -> bool:
        return status_expected(self.expect_status, code)

    def problems(self) -> list[tuple[str, str]]:
        found = super().problems()
        if self.duration > MAX_DURATION:
            found.append(("duration", (
                f"duration ({format_duration(self.duration)}) is over the cap of "
                f"{format_duration(MAX_DURATION)}")))
        if self.count > MAX_REQUESTS_PER_RUN:
            found.append(("rate", (
                f"rate x duration ({self.count} requests) is over the cap of "
                f"{MAX_REQUESTS_PER_RUN} requests per run")))
        if self.count < 1:
            found.append(("duration", "rate x duration is less than one request"))
        needed = self.duration + self.request_timeout
        if self.timeout < needed:
            found.append(("timeout", (
                f"timeout ({format_duration(self.timeout)}) is shorter than duration + "
                f"request_timeout ({format_duration(needed)})")))
        floor = self.duration * MIN_INTERVAL_FACTOR
        if self.interval < floor:
            found.append(("interval", (
                f"interval ({format_duration(self.interval)}) must be at least "
                f"{MIN_INTERVAL_FACTOR} x duration ({format_duration(floor)})")))
        return found
