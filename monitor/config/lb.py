"""`kind: lb`: a few requests per run, to see every backend and address answer."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from monitor.config.common import Origin, ProbeBase, url_label
from monitor.config.http import HttpRequestFields, status_expected
from monitor.config.proxy import bypassed

# Caps: enough requests to see every backend of a pool a few times, far from
# a load test (that is `kind: load`, with its own caps and schedule).
MAX_REQUESTS = 100
MAX_CONCURRENCY = 20
# Distinct `backend` label values kept per probe (the rest is `other`).
MAX_BACKENDS_CAP = 100
# Addresses probed with per_address (each gets `requests` requests).
MAX_ADDRESSES_CAP = 16
MAX_REQUESTS_PER_RUN = 500


class LbProbeConfig(ProbeBase, HttpRequestFields):
    kind: Literal["lb"]
    requests: Annotated[int, Field(ge=1, le=MAX_REQUESTS)] = 10
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = 2
    # A response header naming the backend that answered (bounded label `backend`).
    backend_header: str | None = None
    max_backends: Annotated[int, Field(ge=1, le=MAX_BACKENDS_CAP)] = 20
    # Statuses that count as success (empty: any 2xx).
    expect_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] = ()
    max_error_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    per_address: bool = False
    max_addresses: Annotated[int, Field(ge=1, le=MAX_ADDRESSES_CAP)] = 8
    origins: tuple[Origin, ...] = ()

    @field_validator("backend_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError(f"invalid header name {value!r}")
        return value

    def info_target(self) -> str:
        return url_label(self.url)

    def status_ok(self, code: int) -> bool:
        return status_expected(self.expect_status, code)

    def problems(self) -> list[tuple[str, str]]:
        found = super().problems()
        if self.concurrency > self.requests:
            found.append(("concurrency", (
                f"concurrency ({self.concurrency}) is more than requests ({self.requests})")))
        host = urlsplit(self.url).hostname or ""
        if self.per_address and self.proxy_url is not None and not bypassed(self.no_proxy, host):
            found.append(("per_address", "per_address connects to each address of the host "
                                         "itself, but proxy_url sends the requests through a "
                                         "proxy (which resolves the host): use one or the other, "
                                         "or list the host in no_proxy"))
        addresses = self.max_addresses if self.per_address else 1
        if self.requests * addresses > MAX_REQUESTS_PER_RUN:
            found.append(("requests", (
                f"requests x max_addresses ({self.requests} x {addresses}) exceeds the cap "
                f"of {MAX_REQUESTS_PER_RUN} requests per run")))
        return found
