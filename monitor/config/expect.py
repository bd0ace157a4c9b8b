"""`expect` checks of a response's headers and body, shared by `kind: http`
and journey http steps; :mod:`monitor.probes.expect` runs them.

Everything is compiled here, at load time: a bad regex, header name or JSON
path is a config error naming its field, never a failed run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from monitor import jsonpath
from monitor.config.common import Strict
from monitor.config.types import Regex, compile_regex, shorten

# Per list or map: a probe asserts a few things about a response, not a schema.
MAX_CHECKS = 32
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def header_name(value: Any) -> str:
    """A header name (an RFC 9110 token), lower-cased: names are case-insensitive."""
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"invalid header name {shorten(value)}")
    return value.lower()


def one_or_many(compile: Callable[[Any], Any] = compile_regex) -> Any:
    """A validator: a single string stands for a list of one (``body_regex: 'ok'``
    as before), compiled here so that its errors name the field, not ``[0]``."""

    def check(value: Any) -> Any:
        return [compile(value)] if isinstance(value, str) else value

    return BeforeValidator(check)


def json_path(value: str) -> str:
    jsonpath.parse(value)  # ValueError with the position
    return value


def quote_json(value: Any, limit: int = 80) -> str:
    """``value`` as JSON text (``"ok"``, ``1``, ``true``, ``null``), cut to ``limit``."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


HeaderName = Annotated[str, BeforeValidator(header_name)]
# Validators before run last-declared first: a string becomes a list, then each compiles.
RegexList = Annotated[tuple[Regex, ...], Field(max_length=MAX_CHECKS), one_or_many()]
JsonPathKey = Annotated[str, AfterValidator(json_path)]


class JsonMatch:
    """What the value at one ``expect.json`` path must be: a JSON scalar
    (string, number, boolean, null), compared for equality, or
    ``{regex: R}``: a string in which R is found."""

    __slots__ = ("regex", "value")

    def __init__(self, value: Any = None, regex: re.Pattern[str] | None = None) -> None:
        self.value = value
        self.regex = regex

    @classmethod
    def parse(cls, value: Any) -> JsonMatch:
        if isinstance(value, JsonMatch):
            return value
        if isinstance(value, dict):
            if set(value) != {"regex"}:
                raise ValueError("expected a JSON scalar or {regex: ...}, got a mapping with "
                                 f"keys {shorten(sorted(map(str, value)))}")
            return cls(regex=compile_regex(value["regex"]))
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        if value is None or isinstance(value, str | int | float | bool):
            return cls(value=value)
        raise ValueError(f"expected a JSON scalar (string, number, true, false, null) or "
                         f"{{regex: ...}}, got {shorten(value)}: point the path at a value "
                         "inside a list or object")

    def describe(self) -> str:
        """How the expectation reads in a failure detail."""
        if self.regex is not None:
            return f"a string matching {self.regex.pattern!r}"
        return quote_json(self.value)

    def _key(self) -> tuple[Any, ...]:
        # type() too: 1, 1.0 and true are different expectations in JSON.
        return (self.regex, type(self.value), self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonMatch) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"JsonMatch({self.describe()})"


JsonMatchField = Annotated[Any, BeforeValidator(JsonMatch.parse)]


class ResponseChecks(Strict):
    """Header and body checks; see docs/probes/http.md for their rules."""

    # name -> regex: the header is present and one of its field lines matches.
    headers: Annotated[dict[HeaderName, Regex], Field(max_length=MAX_CHECKS)] = Field(
        default_factory=dict)
    headers_absent: Annotated[tuple[HeaderName, ...], Field(max_length=MAX_CHECKS)] = ()
    body_regex: RegexList = ()
    body_not_regex: RegexList = ()
    # `json` in YAML (the name would shadow BaseModel.json).
    json_paths: Annotated[dict[JsonPathKey, JsonMatchField], Field(max_length=MAX_CHECKS)] = (
        Field(default_factory=dict, alias="json"))

    @field_validator("headers", mode="before")
    @classmethod
    def _one_name_once(cls, value: Any) -> Any:
        """``X-A`` and ``x-a`` are one header: listing both is a mistake."""
        if isinstance(value, dict):
            seen: dict[str, str] = {}
            for name in value:
                if isinstance(name, str):
                    if name.lower() in seen:
                        raise ValueError(f"header {name} is listed twice (as "
                                         f"{seen[name.lower()]}; names are case-insensitive)")
                    seen[name.lower()] = name
        return value

    @model_validator(mode="after")
    def _satisfiable(self) -> ResponseChecks:
        both = [name for name in self.headers_absent if name in self.headers]
        if both:
            raise ValueError(f"header {both[0]} is in both headers and headers_absent: "
                             "the run could never pass")
        return self

    @property
    def reads_body(self) -> bool:
        return bool(self.body_regex or self.body_not_regex or self.json_paths)

    @property
    def any(self) -> bool:
        return bool(self.reads_body or self.headers or self.headers_absent)
