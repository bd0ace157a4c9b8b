"""`kind: http`: one request, a fresh connection every run."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, field_validator

from monitor.config.common import Auth, Origin, ProbeBase, Strict, TLSOptions, url_label
from monitor.config.types import Duration, format_duration

# The body of a probe's response is only checked, never stored whole.
MAX_BODY_BYTES_CAP = 64 * 1024 * 1024
MAX_REDIRECTS_CAP = 30


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed: use headers or auth")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def status_expected(expected: tuple[int, ...], code: int) -> bool:
    """``code`` is one of ``expected``; any 2xx when nothing is listed."""
    return code in expected if expected else 200 <= code < 300
Status = Annotated[int, Field(ge=100, le=599)]


class HttpExpect(Strict):
    status: tuple[Status, ...] = ()  # empty: any 2xx
    body_regex: re.Pattern[str] | None = None
    body_not_regex: re.Pattern[str] | None = None
    max_duration: Duration | None = None

    def status_ok(self, code: int) -> bool:
        return status_expected(self.status, code)


class HttpRequestFields(Strict):
    """What a request is: shared by http, lb, load and burst (url mode)."""

    url: HttpUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    body: SecretStr | None = None
    tls: TLSOptions = TLSOptions()
    auth: Auth = Auth()
    max_redirects: Annotated[int, Field(ge=0, le=MAX_REDIRECTS_CAP)] = 10
    max_body_bytes: Annotated[int, Field(ge=0, le=MAX_BODY_BYTES_CAP)] = 1024 * 1024

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"invalid header name {name!r}")
            # A line break would end the header and inject another one.
            if any(c in secret.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"header {name} has a line break or NUL in its value")
            if not secret.get_secret_value().isascii():
                raise ValueError(f"header {name} must be ASCII (HTTP header values are bytes)")
        return value


class HttpProbeConfig(ProbeBase, HttpRequestFields):
    kind: Literal["http"]
    expect: HttpExpect = HttpExpect()
    origins: tuple[Origin, ...] = ()

    def info_target(self) -> str:
        return url_label(self.url)

    def problems(self) -> list[tuple[str, str]]:
        found = super().problems()
        limit = self.expect.max_duration
        if limit is not None and limit > self.timeout:
            found.append((
                "expect.max_duration",
                f"max_duration ({format_duration(limit)}) exceeds timeout "
                f"({format_duration(self.timeout)}): it could never fail",
            ))
        return found


def header_items(headers: dict[str, SecretStr]) -> list[tuple[str, str]]:
    return [(k, v.get_secret_value()) for k, v in headers.items()]


__all__: list[Any] = ["HttpExpect", "HttpProbeConfig", "HttpRequestFields", "HttpUrl"]
