"""monitor/jsonpath.py: the path subset of journey extracts and expect.json."""

from __future__ import annotations

from typing import Any

import pytest

from monitor import jsonpath

DOCUMENT = {"status": "ok", "data": {"items": [{"id": 7}, {"id": None}]},
            "odd key": {"a-b": True}, "": 0}


@pytest.mark.parametrize(
    ("source", "expected"),
    [("$", DOCUMENT), ("$.status", "ok"), ("$.data.items[0].id", 7),
     ("$.data.items[1].id", None), ('$["odd key"]["a-b"]', True), ("$['odd key'].a-b", True),
     ('$[""]', 0)],
    ids=["root", "member", "chain", "null-is-a-value", "bracketed", "single-quotes", "empty-key"],
)
def test_find_returns_the_value_at_the_path(source: str, expected: Any) -> None:
    """Members, list items and quoted keys lead to the value there, null included."""
    assert jsonpath.find(jsonpath.parse(source), DOCUMENT) == expected


@pytest.mark.parametrize(
    "source",
    ["$.missing", "$.data.items[2]", "$.status.deeper", "$.data[0]", "$.data.items.id"],
    ids=["no-member", "index-past-end", "into-a-string", "index-into-object", "key-into-list"],
)
def test_find_says_missing_when_the_path_leads_nowhere(source: str) -> None:
    """A path that leaves the document is MISSING, never None (that is JSON null)."""
    assert jsonpath.find(jsonpath.parse(source), DOCUMENT) is jsonpath.MISSING


@pytest.mark.parametrize(
    ("source", "message"),
    [("status", "it must start with $"), ("$..a", "at position 1"), ("$.a[-1]", "at position 3"),
     ("$.a[*]", "at position 3"), ("$.1a", "at position 1")],
    ids=["no-dollar", "recursive-descent", "negative-index", "wildcard", "digit-first"],
)
def test_parse_refuses_what_the_subset_lacks(source: str, message: str) -> None:
    """Paths outside the subset are errors that say where they went wrong."""
    with pytest.raises(ValueError, match="invalid JSON path") as raised:
        jsonpath.parse(source)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("not json", "Expecting value"), ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
     ("1" * 5000, "not JSON")],
    ids=["garbage", "nested-100k-deep", "5000-digit-integer"],
)
def test_loads_turns_every_hostile_body_into_not_json(text: str, message: str) -> None:
    """Garbage, deep nesting and huge integers are NotJson, not RecursionError or ValueError."""
    with pytest.raises(jsonpath.NotJson, match=message):
        jsonpath.loads(text)
