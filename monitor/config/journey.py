"""`kind: journey`: ordered steps (HTTP, WebSocket) that walk a user's path.

Strings inside steps may hold ``${name}``: environment variables are
substituted by the loader; what is left must name a variable that an
*earlier* step extracts (checked here, at load time) and is filled in at run
time. ``$$`` is a literal ``$``. Regexes are compiled at load time and take
no variables.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from monitor import jsonpath
from monitor.config.common import (
    Auth,
    Origin,
    ProbeBase,
    PublicQuery,
    Strict,
    TLSOptions,
    url_label,
)
from monitor.config.expect import (
    MAX_CHECKS,
    HeaderName,
    JsonMatch,
    JsonPathKey,
    ResponseChecks,
    one_or_many,
)
from monitor.config.http import (
    MAX_REDIRECTS_CAP,
    Headers,
    HttpVersion,
    JsonValue,
    RequestModel,
    Status,
    check_url,
    status_expected,
)
from monitor.config.net import IpFamily
from monitor.config.proxy import NoProxyList, ProxyURL, check_no_proxy
from monitor.config.tracing import TraceContextConfig
from monitor.config.types import Duration, compile_regex, format_duration, parse_duration
from monitor.templates import variables

# A journey is a path, not a script: 20 steps is far more than a login,
# a connect and a few exchanges, and bounds the per-step series.
MAX_STEPS = 20
# Messages a ws_expect may skip before giving up (the default and the cap).
DEFAULT_MAX_SKIPPED = 10
MAX_SKIPPED_CAP = 1000
# The largest WebSocket message read (aiohttp's max_msg_size); default and cap.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
MAX_MESSAGE_BYTES_CAP = 16 * 1024 * 1024

VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
ACTIONS = ("http", "ws_connect", "ws_send", "ws_expect", "ws_close")


def _regex_text(value: Any) -> Any:
    """Regexes take no variables; `$$` is a literal `$` as everywhere in a journey."""
    if not isinstance(value, str):
        return value
    names = variables(value)
    if names:
        raise ValueError(f"regexes take no variables (found ${{{names[0]}}})")
    return value.replace("$$", "$")


# Validators before run last-declared first: variables are refused, then it compiles.
JourneyRegex = Annotated[re.Pattern[str], BeforeValidator(compile_regex),
                         BeforeValidator(_regex_text)]


def _url(schemes: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        # Variables may sit anywhere after the scheme; check what can be known now.
        return check_url(value, schemes, templated=True)

    return AfterValidator(check)


StepName = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=63)]
VarName = Annotated[str, Field(pattern=VAR_NAME)]

class Extractor:
    """One ``extract`` entry: a JSON path (``$.a.b``, :mod:`monitor.jsonpath`)
    or a regex with one group."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.path: jsonpath.Path | None = None
        self.regex: re.Pattern[str] | None = None
        if source.startswith("$"):
            self.path = jsonpath.parse(source)
        else:
            self.regex = compile_regex(_regex_text(source))
            if self.regex.groups != 1:
                raise ValueError(
                    f"regex {source!r} must have exactly one group (it has {self.regex.groups})"
                )

    def __repr__(self) -> str:
        return f"Extractor({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Extractor) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    @classmethod
    def parse(cls, value: Any) -> Extractor:
        if isinstance(value, Extractor):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError("expected a JSON path such as '$.token' or a regex with one group")
        return cls(value)


ExtractorField = Annotated[Any, BeforeValidator(Extractor.parse)]


def _expected_text(value: Any) -> Any:
    """Expected JSON strings take no variables; `$$` is a literal `$`."""
    if isinstance(value, str):
        names = variables(value)
        if names:
            raise ValueError(f"expected values take no variables (found ${{{names[0]}}})")
        return value.replace("$$", "$")
    if isinstance(value, dict) and isinstance(value.get("regex"), str):
        return {**value, "regex": _regex_text(value["regex"])}
    return value


JourneyRegexList = Annotated[tuple[JourneyRegex, ...], Field(max_length=MAX_CHECKS),
                             one_or_many(lambda text: compile_regex(_regex_text(text)))]
JourneyJsonMatch = Annotated[Any, BeforeValidator(JsonMatch.parse),
                             BeforeValidator(_expected_text)]


class StepExpect(ResponseChecks):
    """What an http step's response must look like: the checks of `kind: http`
    (monitor/config/expect.py), with regexes and expected values that take
    no variables."""

    status: tuple[Status, ...] = ()  # empty: any 2xx
    # The protocol the response must have come in (ALPN: h2 or http/1.1).
    http_version: HttpVersion | None = None
    headers: Annotated[dict[HeaderName, JourneyRegex], Field(max_length=MAX_CHECKS)] = Field(
        default_factory=dict)
    body_regex: JourneyRegexList = ()
    body_not_regex: JourneyRegexList = ()
    json_paths: Annotated[dict[JsonPathKey, JourneyJsonMatch],
                          Field(max_length=MAX_CHECKS)] = Field(default_factory=dict,
                                                                alias="json")

    def status_ok(self, code: int) -> bool:
        return status_expected(self.status, code)


class HttpStep(RequestModel):
    """The request model of config/http.py with a templated URL (and header
    values, body and json: ``${name}`` filled in at run time)."""

    url: Annotated[str, _url(("http", "https"))]
    expect: StepExpect = StepExpect()
    extract: dict[VarName, ExtractorField] = Field(default_factory=dict)
    timeout: Duration | None = None
    # A login should not redirect: by default a 3xx is a status like any other
    # (the one default that differs from http's 10; docs/probes/journey.md).
    max_redirects: Annotated[int, Field(ge=0, le=MAX_REDIRECTS_CAP)] = 0

    @model_validator(mode="after")
    def _version_offered(self) -> HttpStep:
        wanted = self.expect.http_version
        if wanted is not None and wanted not in self.http_versions:
            raise ValueError(f"expect.http_version {wanted} is not in http_versions "
                             f"({', '.join(self.http_versions)}): the step could never pass")
        return self


class WsConnectStep(Strict):
    url: Annotated[str, _url(("ws", "wss"))]
    headers: Headers = Field(default_factory=dict)
    subprotocols: tuple[str, ...] = ()
    timeout: Duration | None = None
    tls: TLSOptions = TLSOptions()
    auth: Auth = Auth()
    max_message_bytes: Annotated[int, Field(ge=1, le=MAX_MESSAGE_BYTES_CAP)] = (
        DEFAULT_MAX_MESSAGE_BYTES
    )
    # As on http steps (config/proxy.py): a CONNECT tunnel for ws:// and wss://.
    proxy_url: ProxyURL | None = None
    no_proxy: NoProxyList = ()

    @model_validator(mode="after")
    def _proxy(self) -> WsConnectStep:
        check_no_proxy(self.proxy_url, self.no_proxy)
        return self


class WsSendStep(Strict):
    json_body: JsonValue = Field(default=None, alias="json")
    text: str | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> WsSendStep:
        if (self.json_body is None) == (self.text is None):
            raise ValueError("give exactly one of json or text")
        return self


class WsExpectStep(Strict):
    json_match: dict[str, JsonValue] | None = None
    regex: JourneyRegex | None = None
    timeout: Duration | None = None
    max_skipped: Annotated[int, Field(ge=0, le=MAX_SKIPPED_CAP)] = DEFAULT_MAX_SKIPPED

    @model_validator(mode="after")
    def _one_matcher(self) -> WsExpectStep:
        if (self.json_match is None) == (self.regex is None):
            raise ValueError("give exactly one of json_match or regex")
        return self

    def matcher_text(self) -> str:
        """How the expectation reads in a detail (templates, never values)."""
        if self.json_match is not None:
            return f"json_match {show(self.json_match)}"
        assert self.regex is not None
        return f"regex {self.regex.pattern!r}"


class WsCloseStep(Strict):
    code: Annotated[int, Field(ge=1000, le=4999)] = 1000


class Step(Strict):
    """One step: a name (the `step` label) and exactly one action."""

    name: StepName
    http: HttpStep | None = None
    ws_connect: WsConnectStep | None = None
    ws_send: WsSendStep | None = None
    ws_expect: WsExpectStep | None = None
    ws_close: WsCloseStep | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_close(cls, data: Any) -> Any:
        # `ws_close:` with nothing after it means "close with the defaults".
        if isinstance(data, dict) and "ws_close" in data and data["ws_close"] is None:
            data = {**data, "ws_close": {}}
        return data

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"a step takes exactly one of {', '.join(ACTIONS)} (found {found})")
        return self

    @property
    def action_name(self) -> str:
        return next(name for name in ACTIONS if getattr(self, name) is not None)

    @property
    def action(self) -> Any:
        return getattr(self, self.action_name)

    @property
    def timeout(self) -> float | None:
        return getattr(self.action, "timeout", None)


class JourneyProbeConfig(ProbeBase):
    kind: Literal["journey"]
    steps: tuple[Step, ...]
    origins: tuple[Origin, ...] = ()
    # Which addresses of every step's host are used (monitor.net).
    ip_family: IpFamily = "any"
    # Query parameters of the steps' URLs shown as they are; the rest is masked.
    public_query: PublicQuery = ()
    # The trace headers of every http and ws_connect step (one trace per run).
    trace_context: TraceContextConfig = TraceContextConfig()

    @field_validator("steps")
    @classmethod
    def _step_count(cls, value: tuple[Step, ...]) -> tuple[Step, ...]:
        if not value:
            raise ValueError("a journey needs at least one step")
        if len(value) > MAX_STEPS:
            raise ValueError(f"a journey has at most {MAX_STEPS} steps (found {len(value)})")
        return value

    @classmethod
    def default_timeout(cls, data: dict[str, Any], global_timeout: float) -> str:
        """The steps' own timeouts plus the global timeout for the steps without one."""
        total = global_timeout
        for step in data.get("steps") or ():
            if not isinstance(step, dict):
                continue
            for action in ACTIONS:
                body = step.get(action)
                if isinstance(body, dict) and "timeout" in body:
                    # An invalid duration is reported by the step's own validation.
                    with contextlib.suppress(ValueError):
                        total += parse_duration(body["timeout"])
        return format_duration(total)

    def info_target(self) -> str:
        for step in self.steps:
            url = getattr(step.action, "url", None)
            if url is not None:
                return url_label(str(url))
        return ""

    def step_timeouts(self) -> float:
        return sum(step.timeout or 0.0 for step in self.steps)

    def problems(self) -> list[tuple[str, str]]:
        found = super().problems()
        needed = self.step_timeouts()
        if self.timeout < needed:
            found.append((
                "timeout",
                f"timeout ({format_duration(self.timeout)}) must be at least the sum of "
                f"the step timeouts ({format_duration(needed)})",
            ))
        seen: dict[str, int] = {}
        defined: set[str] = set()
        open_ws: str | None = None  # the step that opened the WebSocket
        for index, step in enumerate(self.steps):
            where = f"steps[{index}]"
            if step.name in seen:
                found.append((
                    f"{where}.name",
                    f"step name {step.name!r} is already used by steps[{seen[step.name]}]",
                ))
            seen.setdefault(step.name, index)
            action = step.action_name
            used = variables(step.action.model_dump(mode="python", exclude={"extract"}))
            for name in dict.fromkeys(used):
                if name not in defined:
                    found.append((
                        f"{where}.{action}",
                        f"step {step.name!r} uses ${{{name}}}, which no earlier step "
                        f"extracts and no environment variable sets",
                    ))
            if step.http is not None:
                defined |= set(step.http.extract)
            if action == "ws_connect":
                if open_ws is not None:
                    found.append((
                        where,
                        f"step {step.name!r}: a WebSocket is already open (step "
                        f"{open_ws!r}); close it with ws_close first",
                    ))
                open_ws = step.name
            elif action.startswith("ws_") and open_ws is None:
                found.append((
                    where,
                    f"step {step.name!r}: {action} needs an open WebSocket "
                    f"(a ws_connect step before it)",
                ))
            if action == "ws_close":
                open_ws = None
        return found


_PLAIN = re.compile(r"^[A-Za-z0-9_./:-]+$")


def show(value: Any, limit: int = 160) -> str:
    """A short YAML-flow rendering for details: ``{type: agent_response}``."""

    def walk(item: Any) -> str:
        if isinstance(item, dict):
            return "{" + ", ".join(f"{walk(k)}: {walk(v)}" for k, v in item.items()) + "}"
        if isinstance(item, list | tuple):
            return "[" + ", ".join(walk(v) for v in item) + "]"
        if isinstance(item, str) and _PLAIN.match(item):
            return item
        return json.dumps(item)

    text = walk(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
