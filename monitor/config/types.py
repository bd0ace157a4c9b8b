"""Value types shared by the config models: durations, names, addresses."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"`` -> seconds.

    Bare numbers are refused: ``timeout: 30`` is ambiguous (seconds?
    milliseconds?) and a unit costs one character.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"duration {value!r} needs a unit, e.g. '{value}s'")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '30s', got {value!r}")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"invalid duration {value!r}: use a number and ms, s, m, h or d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest exact duration string (``1.5`` -> ``1500ms``)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    ms = seconds * 1000
    return f"{int(ms)}ms" if ms.is_integer() else f"{seconds:g}s"


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("duration must be greater than 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
"""Seconds, written in YAML as a string with a unit."""

ProbeName = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=63)]
LabelValue = Annotated[str, Field(min_length=1, max_length=128)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
"""``host:port``; an IPv6 host is written in brackets: ``[::1]:443``."""


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
