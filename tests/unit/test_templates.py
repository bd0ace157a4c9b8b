"""monitor/templates.py: `${name}` found at load time, filled in at run time; `$$` is `$`."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from monitor.templates import render, render_json, variables


@pytest.mark.parametrize(("value", "names"), [
    pytest.param("Bearer ${token}", ["token"], id="string"),
    pytest.param("$${not_a_variable} ${a}", ["a"], id="dollar-dollar-escapes"),
    pytest.param(SecretStr("${secret}"), ["secret"], id="secret-string"),
    pytest.param({"${k}": ["${v}", 1]}, ["k", "v"], id="keys-and-lists"),
    pytest.param(42, [], id="not-text"),
])
def test_variables_finds_every_name_in_order(value: object, names: list[str]) -> None:
    """Config validation sees each variable a step uses, wherever it sits."""
    assert variables(value) == names


def test_render_fills_values_and_unescapes() -> None:
    """Values replace names; `$$` becomes one `$`."""
    assert render("a=${a} cost=$$5", {"a": "1"}) == "a=1 cost=$5"


def test_render_without_a_value_names_the_variable() -> None:
    """A missing value is a KeyError naming it (the probe reports it as a failed step)."""
    with pytest.raises(KeyError, match="token"):
        render("Bearer ${token}", {})


def test_render_json_fills_keys_and_nested_values() -> None:
    """JSON bodies and matches are filled throughout; other values stay as they are."""
    assert render_json({"${k}": ["${v}", 2, None]}, {"k": "key", "v": "value"}) == {
        "key": ["value", 2, None]}
