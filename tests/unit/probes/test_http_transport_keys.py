"""http_versions, proxy_url and no_proxy in the request model: defaults, and the
`proxy` phase series that only probes with a proxy register."""

from __future__ import annotations

from typing import Any

from monitor.probes import PROBE_KINDS, build_probe

PROBE_CONFIG = PROBE_KINDS  # one probe mapping -> its kind's model
PHASES = "monitor_http_phase_duration_seconds"


def cfg(**fields: Any) -> Any:
    return PROBE_CONFIG.validate({"name": "t", "interval": "30s", "timeout": "5s",
                                         **fields}, {})


def phases(config: Any) -> list[str]:
    return [dict(s.labels)["phase"] for s in build_probe(config).registration_samples()
            if s.metric == PHASES]


def test_defaults_offer_h2_first_and_no_proxy() -> None:
    """Every kind of the request model offers h2, then http/1.1; no proxy."""
    for kind, extra in (("http", {}), ("lb", {}),
                        ("load", {"rate": 1, "duration": "1s", "interval": "1h"})):
        config = cfg(kind=kind, url="https://example.com/", **extra)
        assert config.http_versions == ("h2", "http/1.1")
        assert config.proxy_url is None and config.no_proxy == ()
    journey = cfg(kind="journey", steps=[{"name": "a", "http": {"url": "https://e.test/"}}])
    assert journey.steps[0].http.http_versions == ("h2", "http/1.1")


def test_proxy_phase_registered_only_with_a_proxy() -> None:
    """The proxy phase series exists from registration on for probes that use a
    proxy; other probes keep the five phases (no series that can never move)."""
    plain = cfg(kind="http", url="https://example.com/")
    proxied = cfg(kind="http", url="https://example.com/", proxy_url="http://p.test:3128")
    assert phases(plain) == ["dns", "connect", "tls", "ttfb", "transfer"]
    assert sorted(phases(proxied)) == sorted(["dns", "connect", "proxy", "tls", "ttfb",
                                              "transfer"])
    steps = [{"name": "a", "http": {"url": "https://e.test/"}},
             {"name": "b", "http": {"url": "https://e.test/", "proxy_url": "http://p:3128"}}]
    assert "proxy" in phases(cfg(kind="journey", steps=steps))
    assert "proxy" not in phases(cfg(kind="journey", steps=steps[:1]))


def test_no_proxy_string_is_split_and_the_password_is_a_secret() -> None:
    """no_proxy takes NO_PROXY's comma-separated form; the proxy password is a
    SecretStr the loader hands to the redactor; the model's repr hides it."""
    config = cfg(kind="http", url="https://example.com/", no_proxy="localhost, .internal",
                 proxy_url="http://u:pw-123456@p.test:3128")
    assert [e.text for e in config.no_proxy] == ["localhost", ".internal"]
    assert config.proxy_url.password.get_secret_value() == "pw-123456"
    assert "pw-123456" not in repr(config) and "pw-123456" not in str(config.proxy_url)
