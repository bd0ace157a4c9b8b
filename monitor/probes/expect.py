"""The `expect` checks of a response's headers and body, for every kind that has them.

`kind: http` and journey http steps call :func:`check_response` after the
status check; the checks were compiled at load time
(:mod:`monitor.config.expect`). The rules, in the order they run:

    headers         {NAME: REGEX}: the header is present and REGEX is found
                    (searched, not anchored) in at least one of its field
                    lines. Names are case-insensitive; a header sent several
                    times is several values, each tried on its own and as
                    sent (one line ``a, b`` is one value): the semantics of
                    blackbox_exporter's ``fail_if_header_not_matches``.
    headers_absent  [NAME]: the header is not in the response at all (an
                    empty value counts as present).
    body_regex      every regex is found in the body.
    body_not_regex  no regex is found in the body.
    json            the body is one JSON document, and the value at each
                    path (:mod:`monitor.jsonpath`) equals the expected JSON
                    scalar (1 equals 1.0, true is not 1, a missing member is
                    not null), or, for ``{regex: R}``, is a string in which R
                    is found.

The body is the decoded one (gzip and deflate undone) as text: UTF-8 for
http, the response's charset for journeys, invalid bytes replaced.

The first check that fails raises ``ProbeFailure("assertion", ...)`` with
a detail naming it. With ``quote`` the detail shows up to 80 characters of
what was found (a header value, the body's start, the JSON value); the
values of credential headers are never shown, and the runner redacts
configured secrets from every detail. Journeys pass ``quote=False``: a
login response carries the token before the step has extracted (and so
learnt to mask) it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monitor import jsonpath
from monitor.config.expect import JsonMatch, ResponseChecks, quote_json
from monitor.probes.base import ProbeFailure

# How much of what was found a detail quotes (the detail itself is capped).
QUOTE_CHARS = 80
# Never quoted, whatever the config asserts about them (as in monitor/net/fetch.py's traces).
CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
})


def check_response(checks: ResponseChecks, headers: Sequence[tuple[str, str]],
                   body_text: Callable[[], str], *, quote: bool = True) -> None:
    """Raise ProbeFailure("assertion") at the first check ``headers`` (lower-case
    names, in order, repeats kept) or the body fail. ``body_text`` is called
    at most once, only when a body check is configured."""
    if checks.headers or checks.headers_absent:
        _check_headers(checks, headers, quote)
    if not checks.reads_body:
        return
    text = body_text()
    for regex in checks.body_regex:
        if not regex.search(text):
            shown = f"; body: {_cut(text)!r}" if quote and text else ""
            raise ProbeFailure("assertion", f"body does not match body_regex "
                                            f"{regex.pattern!r}{shown}")
    for regex in checks.body_not_regex:
        found = regex.search(text)
        if found:
            shown = f": {_cut(found.group(0))!r}" if quote else ""
            raise ProbeFailure("assertion", f"body matches body_not_regex "
                                            f"{regex.pattern!r}{shown}")
    if checks.json_paths:
        _check_json(checks.json_paths, text, quote)


def _check_headers(checks: ResponseChecks, headers: Sequence[tuple[str, str]],
                   quote: bool) -> None:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name, []).append(value)
    for name, regex in checks.headers.items():
        got = values.get(name)
        if got is None:
            raise ProbeFailure("assertion", f"header {name} is missing (expected to match "
                                            f"{regex.pattern!r})")
        if not any(regex.search(value) for value in got):
            shown = ""
            if quote and name not in CREDENTIAL_HEADERS:
                shown = " " + ", ".join(repr(_cut(v)) for v in got[:3])
            raise ProbeFailure("assertion", f"header {name}{shown} does not match "
                                            f"{regex.pattern!r}")
    for name in checks.headers_absent:
        if name in values:
            shown = ""
            if quote and name not in CREDENTIAL_HEADERS:
                shown = f" ({_cut(values[name][0])!r})"
            raise ProbeFailure("assertion", f"header {name} is present{shown}, "
                                            "but headers_absent lists it")


def _check_json(paths: dict[str, JsonMatch], text: str, quote: bool) -> None:
    try:
        document = jsonpath.loads(text)
    except jsonpath.NotJson as exc:
        raise ProbeFailure("assertion", f"json {next(iter(paths))}: the body is {exc}") from None
    for source, match in paths.items():
        value = jsonpath.find(jsonpath.parse(source), document)
        if value is jsonpath.MISSING:
            raise ProbeFailure("assertion", f"json {source}: not found "
                                            f"(expected {match.describe()})")
        if not _matches(match, value):
            shown = _describe(value) if quote else _kind(value)
            raise ProbeFailure("assertion", f"json {source} is {shown}, "
                                            f"expected {match.describe()}")


def _matches(match: JsonMatch, value: Any) -> bool:
    if match.regex is not None:
        return isinstance(value, str) and match.regex.search(value) is not None
    expected = match.value
    # JSON booleans are not numbers (Python's True == 1 is).
    if isinstance(expected, bool) or isinstance(value, bool):
        return expected is value
    if isinstance(expected, int | float):
        return isinstance(value, int | float) and expected == value
    return type(value) is type(expected) and expected == value  # a string, or null


def _kind(value: Any) -> str:
    """A value's JSON type, for details that must not show it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "an object" if isinstance(value, dict) else "a list"


def _describe(value: Any) -> str:
    if isinstance(value, dict | list):
        return _kind(value)
    return quote_json(value, QUOTE_CHARS)


def _cut(text: str) -> str:
    return text[:QUOTE_CHARS]
