"""Fields every probe has, and option blocks several kinds share."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.config.types import (
    Duration,
    LabelValue,
    ProbeName,
    Ratio,
    Regex,
    format_duration,
    read_file,
)


class Strict(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Layer = Literal["edge", "service", "egress", "database"]


class ProbeBase(Strict):
    """The fields of every probe (docs/architecture.md, Config)."""

    # Kinds that need a longer default timeout override this.
    name: ProbeName
    kind: str
    level: Annotated[int, Field(ge=1, le=4)] = 1
    layer: Layer = "service"
    service: LabelValue = "default"
    interval: Duration
    timeout: Duration
    allowed_failure_ratio: Ratio = 0.05
    # The share of good runs (and responses) the alert rules hold the probe
    # to: its error budget is 1 - objective, and the pages fire on burn rates
    # of that budget (docs/alerting.md).
    objective: Ratio = 0.99

    # A run that must not start more often than this (burst, load).
    min_interval: ClassVar[float] = 0.0
    # Kind fields whose default is `global.timeout` too (a burst step, a load request).
    global_timeout_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any, info: Any) -> Any:
        """Take interval and timeouts from `global` when the probe omits them."""
        defaults = (info.context or {}).get("global")
        if isinstance(data, dict) and defaults is not None:
            data = dict(data)
            data.setdefault("interval", format_duration(defaults.interval))
            for field in cls.global_timeout_fields:
                data.setdefault(field, format_duration(defaults.timeout))
            if "timeout" not in data:
                data["timeout"] = cls.default_timeout(data, defaults.timeout)
        return data

    @classmethod
    def default_timeout(cls, data: dict[str, Any], global_timeout: float) -> str:
        """The timeout when the probe gives none (a duration string)."""
        return format_duration(global_timeout)

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field problems as (field, sentence); kinds extend this."""
        found: list[tuple[str, str]] = []
        found += _budget_problems(self.objective, self.allowed_failure_ratio)
        if self.timeout >= self.interval:
            found.append((
                "timeout",
                f"timeout ({format_duration(self.timeout)}) must be shorter than "
                f"interval ({format_duration(self.interval)})",
            ))
        if self.interval < self.min_interval:
            found.append((
                "interval",
                f"interval ({format_duration(self.interval)}) must be at least "
                f"{format_duration(self.min_interval)} for kind {self.kind}",
            ))
        return found

    def info_target(self) -> str:
        """What the probe points at, for `monitor_probe_info{target}` (no secrets)."""
        return ""


# The fastest burn rate a page looks for (config/prometheus/rules: 20 x the
# error budget over 2m): an objective whose budget makes that more than every
# run could never page.
FAST_BURN = 20


def _budget_problems(objective: float, allowed: float) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if objective >= 1:
        found.append(("objective", (
            "objective 1 leaves no error budget: any failure would burn it infinitely "
            "fast (use for example 0.999)")))
    elif FAST_BURN * (1 - objective) >= 1:
        budget = 1 - objective
        found.append(("objective", (
            f"objective {objective:g} leaves an error budget of {budget:.4g} of runs: "
            f"the fast-burn page needs more than {FAST_BURN} x {budget:.4g} = "
            f"{FAST_BURN * budget:.4g} of all runs failing, so it could never fire "
            f"(use an objective above {1 - 1 / FAST_BURN:g})")))
    if allowed <= 0:
        found.append(("allowed_failure_ratio", (
            "allowed_failure_ratio 0 leaves no room: a single failure would make the "
            "probe confidently failing (use for example 0.01)")))
    elif allowed >= 1:
        found.append(("allowed_failure_ratio", (
            f"allowed_failure_ratio {allowed:g} allows every run to fail: the probe "
            "could never fail the verdict")))
    return found


class TLSOptions(Strict):
    """Client TLS settings (http, tls, lb, load, burst with url, journey steps)."""

    ca_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    # A client certificate, for servers that verify clients (mutual TLS).
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _ca_readable(self) -> TLSOptions:
        if self.ca_file is not None:
            check_ca_file(self.ca_file)
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (a client certificate), or neither")
        if self.cert_file is not None and self.key_file is not None:
            check_client_cert(self.cert_file, self.key_file)
        return self


def check_ca_file(path: Path) -> None:
    """Raise ValueError unless ``path`` is a CA bundle OpenSSL can load."""
    read_file(path, "ca_file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise ValueError(f"ca_file {str(path)!r} holds no usable certificate: {reason}") from None


def check_client_cert(cert_file: Path, key_file: Path) -> None:
    """Raise ValueError unless the pair loads as a client certificate (the
    key's contents never reach the message)."""
    read_file(cert_file, "cert_file")
    read_file(key_file, "key_file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ValueError(f"cert_file {str(cert_file)!r} and key_file {str(key_file)!r} do not "
                         f"load as a certificate and its key: {reason}") from None


class Origin(Strict):
    """Who produced a response: first matching rule wins (README, Metrics: origin)."""

    name: LabelValue
    header: str
    absent: bool = False
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> Origin:
        if self.absent and self.regex is not None:
            raise ValueError("an origin rule takes either absent: true or regex, not both")
        return self

    def matches(self, headers: dict[str, str]) -> bool:
        """``headers`` has lower-case names."""
        value = headers.get(self.header.lower())
        if self.absent:
            return value is None
        if value is None:
            return False
        return self.regex is None or self.regex.search(value) is not None


def url_label(url: str) -> str:
    """A URL as a label value: no query or fragment (they may carry keys)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# Query parameters a probe's config marks as safe to show (`public_query:
# [page]`); every other query value is a secret wherever the URL is shown.
PublicQuery = tuple[Annotated[str, Field(min_length=1, max_length=128)], ...]
MASK = "<redacted>"


def mask_query(url: str, public: Iterable[str] = ()) -> str:
    """``url`` (or a request target ``/p?q``) with every query value masked
    unless its parameter is in ``public``; the fragment is dropped.

    Masking goes by position, not by name: ``access_token``, ``sig`` and
    ``X-Goog-Signature`` are all masked because they are not public.
    """
    head, sep, query = url.partition("?")
    head = head.partition("#")[0]
    if not sep:
        return head
    query = query.partition("#")[0]
    shown = set(public)
    parts = []
    for item in query.split("&"):
        name, equals, _ = item.partition("=")
        if not equals:  # `?token123`: the whole item is a value
            parts.append(item if unquote_plus(item) in shown else MASK)
        else:
            parts.append(item if unquote_plus(name) in shown else f"{name}={MASK}")
    return f"{head}?{'&'.join(parts)}"


def query_values(url: str, public: Iterable[str] = ()) -> set[str]:
    """The values :func:`mask_query` masks, as written and as decoded."""
    shown = set(public)
    values: set[str] = set()
    for item in urlsplit(url).query.split("&"):
        name, equals, raw = item.partition("=")
        key = unquote_plus(name)
        if not equals:
            key, raw = "", name
        if key in shown or (not equals and unquote_plus(raw) in shown):
            continue
        values |= {v for v in (raw, unquote_plus(raw)) if v}
    return values


def classify_origin(origins: tuple[Origin, ...], headers: dict[str, str]) -> str:
    for rule in origins:
        if rule.matches(headers):
            return rule.name
    return "unclassified"


class GoogleIdToken(Strict):
    audience: str


class Auth(Strict):
    """How a request authenticates (IAM-protected Cloud Run URLs)."""

    google_id_token: GoogleIdToken | None = None
