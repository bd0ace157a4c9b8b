"""Value types shared by the config models: durations, names, addresses."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,9})?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# The longest duration anywhere in a config: far beyond any sensible
# interval, far inside what datetime and the scheduler can add to now.
MAX_DURATION_SECONDS = 366 * 86400.0
# Files named by a config (CA bundles, certificates, keys, secrets) are
# read whole at load time: a larger one is a mistake (or /dev/zero).
MAX_FILE_BYTES = 1024 * 1024
# A regex longer than this is not a check anyone can read (and compiling
# deeply nested ones exhausts the stack).
MAX_REGEX_CHARS = 4096


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
        raise ValueError(f"invalid duration {shorten(value)}: use a number and ms, s, m, h or d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {shorten(value)} is longer than the cap of 366d")
    return seconds


def shorten(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: errors quote input, never 10 MB of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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
    if (not sep or not host or not port.isascii() or not port.isdigit()
            or _has_control(host) or " " in host):
        raise ValueError(f"expected host:port, got {shorten(value)}")
    if len(port) > 5 or not 0 < int(port) < 65536:
        raise ValueError(f"port {port[:8]} in {shorten(value)} is not in 1-65535")
    return value


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


HostPort = Annotated[str, AfterValidator(_host_port)]
"""``host:port``; an IPv6 host is written in brackets: ``[::1]:443``."""


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def read_file(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes.

    Raises ValueError naming ``what`` (the field) otherwise: a directory,
    a device (``/dev/zero`` never ends), a FIFO (would block), too large.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} {str(path)!r} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{what} {str(path)!r} is larger than {limit // 1024} KiB")
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ValueError(f"{what} {str(path)!r} is larger than {limit // 1024} KiB")
    return data


def compile_regex(value: Any) -> Any:
    """A regex compiled at load time, its errors as sentences (pydantic's
    own compile lets RecursionError through for deeply nested patterns)."""
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression (a string), got {shorten(value)}")
    if len(value) > MAX_REGEX_CHARS:
        raise ValueError(f"regular expression longer than {MAX_REGEX_CHARS} characters")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {shorten(value)}: {exc}") from None
    except (RecursionError, OverflowError, MemoryError):
        raise ValueError(f"regular expression {shorten(value)} is nested too deeply") from None


Regex = Annotated[re.Pattern[str], BeforeValidator(compile_regex)]
"""A regular expression, compiled when the config loads."""
