"""The one request model: header values checked at load time in every kind that sends
HTTP headers, json bodies, ip_family, client certificates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from monitor.config import ConfigError, parse_config
from monitor.probes import PROBE_KINDS

INJECTED = "v\r\nInjected: 1"


def probe_with_headers(kind: str, headers: dict[str, str]) -> dict[str, Any]:
    url = "http://127.0.0.1:8080/health"
    if kind == "http":
        return {"name": "p", "kind": "http", "url": url, "headers": headers}
    if kind == "lb":
        return {"name": "p", "kind": "lb", "url": url, "headers": headers}
    if kind == "load":
        return {"name": "p", "kind": "load", "url": url, "headers": headers, "rate": 1,
                "duration": "2s", "interval": "1h"}
    if kind == "burst":
        return {"name": "p", "kind": "burst", "url": url, "headers": headers,
                "steps": [1], "interval": "5m", "step_timeout": "1s", "slow_threshold": "500ms"}
    if kind == "journey-http":
        return {"name": "p", "kind": "journey",
                "steps": [{"name": "s", "http": {"url": url, "headers": headers}}]}
    assert kind == "journey-ws"
    return {"name": "p", "kind": "journey",
            "steps": [{"name": "s", "ws_connect": {"url": "ws://127.0.0.1:8080/ws",
                                                   "headers": headers}}]}


def text(*probes: dict[str, Any]) -> str:
    return yaml.safe_dump({"global": {"interval": "30s", "timeout": "5s"},
                           "probes": list(probes)})


KINDS = ["http", "lb", "load", "burst", "journey-http", "journey-ws"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [INJECTED, "a\nb", "nul\0", "caf\u00e9"])
def test_bad_header_values_are_config_errors(kind: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text(probe_with_headers(kind, {"X-Test": value})), {}, kinds=PROBE_KINDS)
    [problem] = raised.value.problems
    assert "X-Test" in problem and "probes[0]" in problem


@pytest.mark.parametrize("kind", KINDS)
def test_good_headers_load(kind: str) -> None:
    parse_config(text(probe_with_headers(kind, {"X-Test": "v1", "Authorization": "Bearer x"})),
                 {}, kinds=PROBE_KINDS)


@pytest.mark.parametrize("kind", ["burst", "journey-http"])
def test_validate_exits_3_on_header_injection(kind: str, tmp_path: Path) -> None:
    """Issue 14's verified bug: burst and journey accepted "v\\r\\nInjected: 1"."""
    path = tmp_path / "monitor.yaml"
    path.write_text(text(probe_with_headers(kind, {"X-Test": INJECTED})))
    done = subprocess.run([sys.executable, "-m", "monitor", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "X-Test has a line break" in done.stderr + done.stdout


def test_json_body_and_body_exclude_each_other() -> None:
    probe = {"name": "p", "kind": "http", "url": "http://127.0.0.1/x", "method": "POST",
             "json": {"a": [1, "b"]}}
    config = parse_config(text(probe), {}, kinds=PROBE_KINDS)
    assert config.probes[0].json_body == {"a": [1, "b"]}
    with pytest.raises(ConfigError, match="either json or body"):
        parse_config(text({**probe, "body": "raw"}), {}, kinds=PROBE_KINDS)


@pytest.mark.parametrize("kind", ["http", "tcp", "tls", "burst", "lb", "journey"])
def test_ip_family_on_every_kind_that_resolves(kind: str) -> None:
    probes = {
        "http": {"name": "p", "kind": "http", "url": "http://h.test/"},
        "lb": {"name": "p", "kind": "lb", "url": "http://h.test/"},
        "tcp": {"name": "p", "kind": "tcp", "target": "h.test:80"},
        "tls": {"name": "p", "kind": "tls", "target": "h.test:443"},
        "burst": {"name": "p", "kind": "burst", "target": "h.test:7", "steps": [1],
                  "interval": "5m", "step_timeout": "1s", "slow_threshold": "500ms"},
        "journey": {"name": "p", "kind": "journey",
                    "steps": [{"name": "s", "http": {"url": "http://h.test/"}}]},
    }
    assert parse_config(text(probes[kind]), {}, kinds=PROBE_KINDS).probes[0].ip_family == "any"
    loaded = parse_config(text({**probes[kind], "ip_family": "ipv6"}), {}, kinds=PROBE_KINDS)
    assert loaded.probes[0].ip_family == "ipv6"
    with pytest.raises(ConfigError, match="ip_family"):
        parse_config(text({**probes[kind], "ip_family": "ipv5"}), {}, kinds=PROBE_KINDS)


def test_client_certificate_needs_both_files_that_load(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("monitor-client")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    probe = {"name": "p", "kind": "http", "url": "https://127.0.0.1/x"}
    loaded = parse_config(text({**probe, "tls": {"cert_file": str(cert), "key_file": str(key)}}),
                          {}, kinds=PROBE_KINDS)
    assert loaded.probes[0].tls.cert_file == cert
    with pytest.raises(ConfigError, match="both cert_file and key_file"):
        parse_config(text({**probe, "tls": {"cert_file": str(cert)}}), {}, kinds=PROBE_KINDS)
    with pytest.raises(ConfigError, match="do not load") as raised:
        parse_config(text({**probe, "tls": {"cert_file": str(key), "key_file": str(cert)}}),
                     {}, kinds=PROBE_KINDS)
    assert "PRIVATE KEY" not in str(raised.value.problems)
