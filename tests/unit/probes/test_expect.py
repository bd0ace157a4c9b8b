"""monitor/probes/expect.py: the header, body and JSON checks of `expect`."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.config.http import HttpExpect
from monitor.probes.base import ProbeFailure
from monitor.probes.expect import check_response

HEADERS = [("content-type", "application/json; charset=utf-8"), ("x-app-revision", "backend-7"),
           ("set-cookie", "session=s3cr3t-value; HttpOnly"), ("set-cookie", "theme=dark"),
           ("vary", "Accept-Encoding, Origin"), ("x-empty", "")]
BODY = ('{"status": "ok", "version": "1.4.2", "replicas": 3, "ratio": 1.0, "ready": true, '
        '"error": null, "items": [{"id": "a"}], "nested": {"deep": {"x": "y"}}}')


def failure(expect: dict[str, Any], headers: list[tuple[str, str]] = HEADERS, body: str = BODY,
            *, quote: bool = True) -> ProbeFailure | None:
    checks = HttpExpect.model_validate(expect)
    try:
        check_response(checks, headers, lambda: body, quote=quote)
    except ProbeFailure as exc:
        if exc.reason != "assertion":
            raise
        return exc
    return None


@pytest.mark.parametrize(
    "expect",
    [{"headers": {"Content-Type": "^application/json"}},
     {"headers": {"X-APP-REVISION": r"backend-\d+$"}},
     {"headers": {"set-cookie": "^theme="}},
     {"headers": {"vary": "Origin"}},
     {"headers": {"x-empty": "^$"}},
     {"headers_absent": ["Server", "X-Debug"]},
     {"body_regex": '"ok"'},
     {"body_regex": ['"ok"', r'"version": "1\.']},
     {"body_not_regex": ["maintenance", "degraded"]},
     {"json": {"$.status": "ok", "$.replicas": 3, "$.ratio": 1, "$.ready": True,
               "$.error": None, "$.items[0].id": "a", "$.nested.deep.x": "y"}},
     {"json": {"$.replicas": 3.0}},
     {"json": {"$.version": {"regex": r"^1\.4\."}}}],
    ids=["header-regex", "header-name-any-case", "one-of-repeated-values", "searched-not-anchored",
         "empty-value-present", "absent", "body-regex-string", "body-regex-list",
         "body-not-regex-list", "json-scalars", "json-3.0-is-3", "json-regex"],
)
def test_passing_checks(expect: dict[str, Any]) -> None:
    """Each check passes on a response that satisfies it."""
    assert failure(expect) is None


@pytest.mark.parametrize(
    ("expect", "detail"),
    [({"headers": {"X-Served-By": "."}}, "header x-served-by is missing (expected to match '.')"),
     ({"headers": {"x-app-revision": "^backend-8$"}},
      "header x-app-revision 'backend-7' does not match '^backend-8$'"),
     ({"headers_absent": ["Vary"]},
      "header vary is present ('Accept-Encoding, Origin'), but headers_absent lists it"),
     ({"headers_absent": ["x-empty"]}, "header x-empty is present (''), but headers_absent"),
     ({"body_regex": ['"ok"', "healthy"]}, "body does not match body_regex 'healthy'; body: '{"),
     ({"body_not_regex": ["maint", r"\d\.\d\.\d"]}, "body matches body_not_regex '\\\\d\\\\.\\\\d"
                                                    "\\\\.\\\\d': '1.4.2'"),
     ({"json": {"$.status": "down"}}, 'json $.status is "ok", expected "down"'),
     ({"json": {"$.missing": None}}, "json $.missing: not found (expected null)"),
     ({"json": {"$.error": 0}}, "json $.error is null, expected 0"),
     ({"json": {"$.ready": 1}}, "json $.ready is true, expected 1"),
     ({"json": {"$.replicas": "3"}}, 'json $.replicas is 3, expected "3"'),
     ({"json": {"$.items": "a"}}, 'json $.items is a list, expected "a"'),
     ({"json": {"$.replicas": {"regex": "3"}}}, "json $.replicas is 3, expected a string matching"),
     ({"json": {"$.version": {"regex": "^2"}}}, "json $.version is \"1.4.2\", expected a string")],
    ids=["header-missing", "header-mismatch", "header-present", "empty-header-present",
         "second-body-regex", "second-body-not-regex", "json-unequal", "json-missing-is-not-null",
         "json-null-is-not-0", "json-true-is-not-1", "json-number-is-not-string",
         "json-list-is-not-scalar", "json-regex-needs-string", "json-regex-mismatch"],
)
def test_failing_checks_name_the_check(expect: dict[str, Any], detail: str) -> None:
    """A failing check fails with assertion and a detail naming it and what was found."""
    found = failure(expect)
    assert found is not None
    assert detail in found.detail


def test_not_json_body_fails_the_json_check() -> None:
    """A body that is not JSON (or nested too deeply to parse) fails json checks."""
    found = failure({"json": {"$.status": "ok"}}, body="<html>ok</html>")
    assert found is not None and found.detail.startswith("json $.status: the body is not JSON")
    found = failure({"json": {"$.status": "ok"}}, body="[" * 50_000)
    assert found is not None and "nested too deeply" in found.detail


def test_credential_header_values_are_never_quoted() -> None:
    """A failing check on Set-Cookie names the header but never shows its values."""
    found = failure({"headers": {"Set-Cookie": "^lang="}})
    assert found is not None
    assert found.detail == "header set-cookie does not match '^lang='"
    assert "s3cr3t" not in found.detail


def test_without_quote_nothing_found_is_shown() -> None:
    """Journeys (quote=False) get details that show no header value, body or JSON value."""
    cases = [{"headers": {"x-app-revision": "x"}}, {"headers_absent": ["vary"]},
             {"body_regex": "nope"}, {"body_not_regex": "ok"}, {"json": {"$.version": "2"}}]
    details = []
    for expect in cases:
        found = failure(expect, quote=False)
        assert found is not None
        details.append(found.detail)
    assert details == [
        "header x-app-revision does not match 'x'",
        "header vary is present, but headers_absent lists it",
        "body does not match body_regex 'nope'",
        "body matches body_not_regex 'ok'",
        'json $.version is a string of 5 characters, expected "2"',
    ]


def test_the_body_is_not_read_without_body_checks() -> None:
    """Header-only checks never decode the body (it may be large)."""
    checks = HttpExpect.model_validate({"headers": {"content-type": "json"}})

    def body() -> str:
        raise AssertionError("the body was read")

    check_response(checks, HEADERS, body)


def test_a_single_string_is_a_list_of_one() -> None:
    """body_regex: 'x' and body_regex: ['x'] are the same config (back-compatible)."""
    one = HttpExpect.model_validate({"body_regex": "x", "body_not_regex": "y"})
    many = HttpExpect.model_validate({"body_regex": ["x"], "body_not_regex": ["y"]})
    assert one == many
    assert [r.pattern for r in one.body_regex] == ["x"]
