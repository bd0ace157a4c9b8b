"""`kind: http`: one request, a fresh connection every run."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, field_validator

from monitor.config.common import (
    Auth,
    Origin,
    ProbeBase,
    PublicQuery,
    Strict,
    TLSOptions,
    mask_query,
    url_label,
)
from monitor.config.expect import ResponseChecks
from monitor.config.tracing import TraceContextConfig
from monitor.config.types import Duration, format_duration, shorten

# The body of a probe's response is only checked, never stored whole.
MAX_BODY_BYTES_CAP = 64 * 1024 * 1024
MAX_REDIRECTS_CAP = 30


def check_url(value: str, schemes: tuple[str, ...], *, templated: bool = False) -> str:
    """Raise ValueError unless ``value`` is a URL of ``schemes`` with a host,
    a port of 1-65535 (or none), no credentials and no whitespace or control
    characters. Errors quote it with its query values masked. With
    ``templated``, ``${name}`` parts stand for values known at run time."""
    shown = shorten(mask_query(value), 120)
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"the URL has whitespace or control characters: {shown}")
    try:
        parts = urlsplit(value)
        port = None if templated and "${" in parts.netloc else parts.port
    except ValueError as exc:  # a bad IPv6 literal, a port out of range or not a number
        if "Port" in str(exc):
            raise ValueError(f"the port in {shown} is not a number in 1-65535") from None
        raise ValueError(f"invalid URL {shown}: {exc}") from None
    wanted = " or ".join(f"{s}://" for s in schemes)
    if parts.scheme not in schemes or not (parts.hostname or (templated and parts.netloc)):
        article = "an" if wanted.startswith("http") else "a"
        raise ValueError(f"expected {article} {wanted} URL, got {shown}")
    if port == 0:
        raise ValueError(f"port 0 in {shown} is not in 1-65535")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed: use headers or auth")
    return value


def _http_url(value: str) -> str:
    return check_url(value, ("http", "https"))


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def status_expected(expected: tuple[int, ...], code: int) -> bool:
    """``code`` is one of ``expected``; any 2xx when nothing is listed."""
    return code in expected if expected else 200 <= code < 300
Status = Annotated[int, Field(ge=100, le=599)]


class HttpExpect(ResponseChecks):
    """Status and duration; headers, body regexes and JSON paths (ResponseChecks)."""

    status: tuple[Status, ...] = ()  # empty: any 2xx
    max_duration: Duration | None = None

    def status_ok(self, code: int) -> bool:
        return status_expected(self.status, code)


class HttpRequestFields(Strict):
    """What a request is: shared by http, lb, load and burst (url mode)."""

    url: HttpUrl
    # Query parameters shown as they are; every other query value is masked.
    public_query: PublicQuery = ()
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    body: SecretStr | None = None
    tls: TLSOptions = TLSOptions()
    auth: Auth = Auth()
    max_redirects: Annotated[int, Field(ge=0, le=MAX_REDIRECTS_CAP)] = 10
    max_body_bytes: Annotated[int, Field(ge=0, le=MAX_BODY_BYTES_CAP)] = 1024 * 1024
    trace_context: TraceContextConfig = TraceContextConfig()

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
        if self.method == "HEAD" and (self.expect.body_regex or self.expect.json_paths):
            found.append(("expect", "body_regex and json need a body, and a HEAD "
                                    "response has none: the run could never pass"))
        return found


def header_items(headers: dict[str, SecretStr]) -> list[tuple[str, str]]:
    return [(k, v.get_secret_value()) for k, v in headers.items()]


__all__: list[Any] = ["HttpExpect", "HttpProbeConfig", "HttpRequestFields", "HttpUrl"]
