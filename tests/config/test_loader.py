"""monitor/config/loader.py beyond the error table: secrets in errors, encodings, $-escapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, parse_config
from monitor.probes import PROBE_KINDS

SECRET = "hunter2-not-for-logs"


def test_errors_never_quote_a_secret_value() -> None:
    """An invalid value built from a secret variable is reported without the secret."""
    text = "probes:\n  - {name: a, kind: http, url: 'ftp://h/${DB_PASSWORD}'}\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, {"DB_PASSWORD": SECRET}, kinds=PROBE_KINDS)
    (problem,) = raised.value.problems
    assert SECRET not in problem
    assert problem == ("probes[0].url (probe 'a'): expected an http:// or https:// URL, "
                       "got 'ftp://h/<redacted>'")


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 give a clear problem, not a traceback."""
    path = tmp_path / "monitor.yaml"
    path.write_bytes(b"probes: []\n# \xff\xfe\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, kinds=PROBE_KINDS)
    assert raised.value.problems == [f"{path}: not UTF-8 text (byte 13)"]


def test_secret_values_are_collected_from_env_and_secret_fields() -> None:
    """Secret-named variables and header values end up in Config.secrets, not in repr."""
    text = """
probes:
  - name: a
    kind: http
    url: https://h/${REGION}
    headers: {Authorization: "Bearer ${API_TOKEN}"}
"""
    config = parse_config(text, {"API_TOKEN": SECRET, "REGION": "us-central1"}, kinds=PROBE_KINDS)
    assert SECRET in config.secrets
    assert "us-central1" not in config.secrets
    assert SECRET not in repr(config)


def test_info_target_drops_query_strings() -> None:
    """A URL's query (which may carry a key) never becomes the `target` label."""
    text = "probes:\n  - {name: a, kind: http, url: 'https://h/x?api_key=abc#frag'}\n"
    (probe,) = parse_config(text, {}, kinds=PROBE_KINDS).probes
    assert probe.info_target() == "https://h/x"
