"""monitor/redact.py: known secrets and secret-shaped text never pass."""

from __future__ import annotations

import pytest

from monitor.redact import MASK, Redactor


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        pytest.param("Authorization: Bearer abc.def.ghi", "abc.def.ghi", id="auth-header"),
        pytest.param("postgresql://app:s3cr3t@10.0.0.1/db", "s3cr3t", id="dsn-password"),
        pytest.param("host=db user=app password=hunter22 dbname=x", "hunter22", id="kv-password"),
        pytest.param("sent bearer eyJhbGciOi.x.y upstream", "eyJhbGciOi.x.y", id="bearer-inline"),
        pytest.param("cookie: session=abcdef123", "abcdef123", id="cookie"),
    ],
)
def test_patterns_hide_secret_shaped_text(text: str, leak: str) -> None:
    """Secrets no config names are still masked by pattern."""
    out = Redactor().text(text)
    assert leak not in out
    assert MASK in out


def test_known_secret_values_are_masked_anywhere() -> None:
    """A value the config marked secret is masked inside any text, longest first."""
    redactor = Redactor(["tok", "supersecretvalue", "supersecret"])
    out = redactor.text("error near supersecretvalue and supersecret; tok stays short")
    assert "supersecret" not in out
    assert "tok stays" in out  # shorter than the minimum: too likely an ordinary word


def test_nested_values() -> None:
    """Dicts and lists are walked."""
    redactor = Redactor(["p4ssw0rd!"])
    assert redactor.value({"a": ["x p4ssw0rd! y"], "n": 3}) == {"a": [f"x {MASK} y"], "n": 3}
