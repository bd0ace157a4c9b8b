"""`kind: http`: one request, a fresh connection every run."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator

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
from monitor.config.net import IpFamily
from monitor.config.proxy import NoProxyList, ProxyURL, check_no_proxy
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
    # The protocol the response must have come in (ALPN: h2 or http/1.1).
    http_version: HttpVersion | None = None

    def status_ok(self, code: int) -> bool:
        return status_expected(self.status, code)


HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def check_headers(value: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """Header names are tokens; values have no line break or NUL (either would
    end the header and inject another one) and are ASCII (header values are
    bytes). The same check for every kind that sends HTTP headers."""
    for name, secret in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        text = secret.get_secret_value()
        if any(c in text for c in "\r\n\0"):
            raise ValueError(f"header {name} has a line break or NUL in its value")
        if not text.isascii():
            raise ValueError(f"header {name} must be ASCII (HTTP header values are bytes)")
    return value


Headers = Annotated[dict[str, SecretStr], AfterValidator(check_headers)]
Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# ALPN protocol ids (RFC 7301): what an https request offers, in order.
HttpVersion = Literal["h2", "http/1.1"]
DEFAULT_HTTP_VERSIONS: tuple[HttpVersion, ...] = ("h2", "http/1.1")


def _versions(value: tuple[HttpVersion, ...]) -> tuple[HttpVersion, ...]:
    if not value:
        raise ValueError("offer at least one of h2, http/1.1")
    if len(set(value)) != len(value):
        raise ValueError("each version once")
    return value


HttpVersions = Annotated[tuple[HttpVersion, ...], AfterValidator(_versions)]


def version_matches(wanted: HttpVersion, http_version: str) -> bool:
    """Whether a response of ``http_version`` ("2", "1.1", "1.0") was spoken in
    ``wanted``: h2 is HTTP/2; http/1.1 is HTTP/1.x, as its ALPN id means."""
    return http_version == "2" if wanted == "h2" else http_version.startswith("1.")


def _json_value(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValueError("must be plain JSON data (mappings, lists, strings, numbers)") from None
    return value


JsonValue = Annotated[Any, AfterValidator(_json_value)]


class RequestModel(Strict):
    """The one request model: method, headers, body or json, redirects, TLS,
    auth. http, lb and load take it with a fixed ``url`` (HttpRequestFields),
    journey's http steps with a templated one (config/journey.py); burst's url
    mode takes its header check (a burst is GET/HEAD without a body)."""

    method: Method = "GET"
    headers: Headers = Field(default_factory=dict)
    body: SecretStr | None = None
    # Sent as JSON with Content-Type: application/json (unless headers set one).
    json_body: JsonValue = Field(default=None, alias="json")
    tls: TLSOptions = TLSOptions()
    auth: Auth = Auth()
    max_redirects: Annotated[int, Field(ge=0, le=MAX_REDIRECTS_CAP)] = 10
    max_body_bytes: Annotated[int, Field(ge=0, le=MAX_BODY_BYTES_CAP)] = 1024 * 1024
    # The ALPN offer of https requests, in order; plain http is always HTTP/1.1.
    http_versions: HttpVersions = DEFAULT_HTTP_VERSIONS
    # An HTTP proxy (CONNECT for https, absolute-form for http); config/proxy.py.
    proxy_url: ProxyURL | None = None
    no_proxy: NoProxyList = ()

    @model_validator(mode="after")
    def _one_body(self) -> RequestModel:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either json or body, not both")
        check_no_proxy(self.proxy_url, self.no_proxy)
        return self


class HttpRequestFields(RequestModel):
    """A request to a fixed URL: http, lb and load."""

    url: HttpUrl
    # Query parameters shown as they are; every other query value is masked.
    public_query: PublicQuery = ()
    ip_family: IpFamily = "any"
    # Trace headers (traceparent, X-Cloud-Trace-Context); a journey sets them per probe.
    trace_context: TraceContextConfig = TraceContextConfig()


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
        if (self.expect.http_version is not None
                and self.expect.http_version not in self.http_versions):
            found.append(("expect.http_version", f"{self.expect.http_version} is not in "
                          f"http_versions ({', '.join(self.http_versions)}): the run could "
                          "never pass"))
        if self.method == "HEAD" and (self.expect.body_regex or self.expect.json_paths):
            found.append(("expect", "body_regex and json need a body, and a HEAD "
                                    "response has none: the run could never pass"))
        return found


def header_items(headers: dict[str, SecretStr]) -> list[tuple[str, str]]:
    return [(k, v.get_secret_value()) for k, v in headers.items()]


def request_body(fields: RequestModel) -> tuple[bytes | None, list[tuple[str, str]]]:
    """(body bytes, headers) of a fixed request: ``json`` encoded with its
    Content-Type added unless the headers give one."""
    headers = header_items(fields.headers)
    if fields.json_body is not None:
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
        return json.dumps(fields.json_body).encode(), headers
    if fields.body is not None:
        return fields.body.get_secret_value().encode(), headers
    return None, headers


__all__: list[Any] = [
    "DEFAULT_HTTP_VERSIONS",
    "Headers",
    "HttpExpect",
    "HttpProbeConfig",
    "HttpRequestFields",
    "HttpUrl",
    "HttpVersion",
    "RequestModel",
    "check_headers",
    "request_body",
    "version_matches",
]
