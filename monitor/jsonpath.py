"""The small JSONPath subset of journey extracts and ``expect.json``.

A path names one value of a JSON document::

    $                 the whole document
    $.name            a member (letters, digits, ``_`` and ``-``; not starting with a digit)
    $["any key"]      a member of any name ('single quotes' too)
    $[0]              an item of a list, counted from 0

and chains them: ``$.data.items[0].id``. No wildcards, filters, slices or
``..``: an assertion or an extract names exactly one value, so a path that
could match several has no meaning here. About twenty lines, so no
JSONPath library (they parse the full grammar and return lists).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Final

Path = tuple[str | int, ...]


class _Missing:
    """What :func:`find` returns when the path leads nowhere (JSON ``null`` is ``None``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\"([^\"]*)\"\]|\['([^']*)'\]")


@functools.lru_cache(maxsize=256)
def parse(source: str) -> Path:
    """The steps of ``source`` (``$.a[0]`` -> ``("a", 0)``); ValueError naming
    the position when it is not a path of the subset above."""
    if not source.startswith("$"):
        raise ValueError(f"invalid JSON path {source!r}: it must start with $")
    parts: list[str | int] = []
    pos = 1
    while pos < len(source):
        match = _PART.match(source, pos)
        if not match:
            raise ValueError(f"invalid JSON path {source!r} at position {pos} "
                             "(supported: $.name, $[\"name\"], $[0])")
        key, index, double, single = match.groups()
        parts.append(int(index) if index is not None else (key or double or single or ""))
        pos = match.end()
    return tuple(parts)


def find(path: Path, document: Any) -> Any:
    """The value at ``path`` in a parsed document, or :data:`MISSING`."""
    value = document
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return MISSING
        elif not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


class NotJson(ValueError):
    """A body that is not a JSON document (or one nested too deeply to parse)."""


def loads(text: str) -> Any:
    """``json.loads``, with every way a hostile body can fail it as :class:`NotJson`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotJson(f"not JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:  # "[[[[..." a few thousand deep: the parser recurses
        raise NotJson("JSON nested too deeply to parse") from None
    except ValueError as exc:  # an integer of more than 4300 digits (int_max_str_digits)
        raise NotJson(f"not JSON ({exc})") from None
