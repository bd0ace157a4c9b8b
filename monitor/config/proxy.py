"""`proxy_url` and `no_proxy` of the request model (http, lb, load, journey http
steps) and of journey ws_connect steps.

``proxy_url`` is ``http://[user:password@]host:port``: an HTTP proxy spoken
to in clear (CONNECT for https targets, absolute-form requests for http).
Credentials in it (percent-escaped as in any URL; ``${ENV}`` works) are
sent as ``Proxy-Authorization: Basic`` and are a secret: :class:`ProxyURL`
keeps them as SecretStr (the redactor learns them like every config secret)
and out of its ``repr`` and ``str``, so no error, log line, trace or status
page shows them.

``no_proxy`` entries, matched against the URL's host (never its resolved
addresses), case-insensitively, a trailing dot ignored, as curl and most
tools read ``NO_PROXY``:

    *                 every host: the proxy is never used
    example.com       example.com and every name under it (api.example.com);
    .example.com      the same (a leading ``.`` or ``*.`` is dropped)
    10.1.2.3, ::1     that IP literal in the URL
    10.0.0.0/8        IP literals inside the range (IPv4 or IPv6 CIDR)

A port in an entry is a config error (entries are hosts), as is an empty one.
A single comma-separated string (``no_proxy: ${NO_PROXY}``) is split.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    model_validator,
)
from pydantic_core import core_schema

from monitor.config.types import shorten

MAX_NO_PROXY = 64
_HOST = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", re.IGNORECASE)
_IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyURL(BaseModel):
    """A parsed ``proxy_url``. The password and the header value made of it are
    SecretStr: the loader's secret walk finds them for the redactor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int
    password: SecretStr | None = None
    basic: SecretStr | None = None  # the Proxy-Authorization value

    @property
    def authorization(self) -> str | None:
        return self.basic.get_secret_value() if self.basic is not None else None

    @property
    def address(self) -> str:
        """host:port, as details name the proxy."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        userinfo = "***@" if self.basic is not None else ""
        return f"http://{userinfo}{self.address}"

    def __repr__(self) -> str:
        return f"ProxyURL({self})"

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, ProxyURL):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected a URL such as http://proxy:3128, got {shorten(value)}")
        return _parse_proxy_url(value)

    @classmethod
    def parse(cls, value: str) -> ProxyURL:
        return cls.model_validate(value)


def _parse_proxy_url(value: str) -> dict[str, Any]:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("proxy_url is not a valid URL, or its port is not in 1-65535") \
            from None
    # What is shown never carries the credentials.
    shown = f"{parts.scheme}://{parts.hostname or ''}" + (f":{port}" if port else "")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("proxy_url has whitespace or control characters")
    if parts.scheme != "http":
        raise ValueError(f"proxy_url must be an http:// URL (a proxy spoken to in clear), "
                         f"got {shown}")
    if not parts.hostname:
        raise ValueError("proxy_url has no host")
    if not _HOST.fullmatch(parts.hostname) and ":" not in parts.hostname:
        raise ValueError(f"proxy_url host {shorten(parts.hostname)} is not a host name or IP "
                         "(run-time variables are not taken here)")
    if not port:
        raise ValueError(f"proxy_url needs a port ({shown}:3128, say): proxies have no "
                         "single default")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"proxy_url is a proxy's address, without a path or query: {shown}")
    found: dict[str, Any] = {"host": parts.hostname.lower(), "port": port}
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        if any(c in user + password for c in "\r\n\0"):
            raise ValueError("proxy_url credentials have a line break or NUL")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        found["password"] = SecretStr(password) if password else None
        found["basic"] = SecretStr(f"Basic {token}")
    return found


@dataclass(frozen=True, slots=True)
class NoProxy:
    """One ``no_proxy`` entry: every host, a domain and its subdomains, or IPs."""

    text: str
    domain: str | None = None
    network: _IpNetwork | None = None

    def matches(self, host: str) -> bool:
        if self.text == "*":
            return True
        name = host.lower().rstrip(".").strip("[]")
        if self.network is not None:
            try:
                return ipaddress.ip_address(name) in self.network
            except ValueError:  # a name: IP entries never match names
                return False
        assert self.domain is not None
        return name == self.domain or name.endswith("." + self.domain)

    @classmethod
    def parse(cls, value: Any) -> NoProxy:
        if isinstance(value, NoProxy):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a host, a .domain, an IP, a CIDR range or *")
        text = value.strip().lower()
        if text == "*":
            return cls(text)
        bare = text.strip("[]")
        try:
            return cls(text, network=ipaddress.ip_network(bare, strict=False))
        except ValueError:
            pass
        if "/" in bare:
            raise ValueError(f"{shorten(value)} is not a CIDR range")
        if ":" in bare:
            raise ValueError(f"no_proxy entry {shorten(value)}: entries are hosts, without "
                             "a port")
        domain = bare.removeprefix("*.").lstrip(".").rstrip(".")
        if not domain or any(c.isspace() or c in "*@" for c in domain):
            raise ValueError(f"no_proxy entry {shorten(value)} is not a host or domain")
        return cls(text, domain=domain)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(cls.parse)


def _split_commas(value: Any) -> Any:
    """``NO_PROXY`` style: one string of comma-separated entries."""
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    return value


NoProxyList = Annotated[tuple[NoProxy, ...], Field(max_length=MAX_NO_PROXY),
                        BeforeValidator(_split_commas)]


def check_no_proxy(proxy_url: ProxyURL | None, no_proxy: Sequence[NoProxy]) -> None:
    """``no_proxy`` means nothing without a proxy: say so rather than ignore it."""
    if no_proxy and proxy_url is None:
        raise ValueError("no_proxy without proxy_url: there is no proxy to bypass")


def bypassed(no_proxy: Sequence[NoProxy], host: str) -> bool:
    """Whether ``host`` is reached directly (one of ``no_proxy`` matches it)."""
    return any(entry.matches(host) for entry in no_proxy)


__all__ = ["MAX_NO_PROXY", "NoProxy", "NoProxyList", "ProxyURL", "bypassed", "check_no_proxy"]
