"""monitor/config/source.py: a file or a text, with variables that never touch os.environ."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor.config import ConfigError, ConfigSource
from monitor.probes import PROBE_KINDS

PROBE = """probes:
  - {name: edge, kind: tcp, target: "${TARGET}"}
"""


def test_text_source_reads_its_own_variables() -> None:
    """Variables given with the source fill ${NAME}; os.environ stays as it was."""
    before = dict(os.environ)
    config = ConfigSource(text=PROBE, environ={"TARGET": "127.0.0.1:7"}, kinds=PROBE_KINDS).load()
    assert config.probes[0].target == "127.0.0.1:7"
    assert dict(os.environ) == before


def test_source_variables_take_precedence_and_the_process_environment_fills_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The source's variables win over the process' own; the others come from os.environ."""
    monkeypatch.setenv("TARGET", "127.0.0.1:1")
    monkeypatch.setenv("PORT_B", "9")
    text = PROBE + '  - {name: other, kind: tcp, target: "127.0.0.1:${PORT_B}"}\n'
    config = ConfigSource(text=text, environ={"TARGET": "127.0.0.1:7"}, kinds=PROBE_KINDS).load()
    assert [p.target for p in config.probes] == ["127.0.0.1:7", "127.0.0.1:9"]


def test_file_source_reads_the_file_again_on_each_load(tmp_path: Path) -> None:
    """A reload is a second load: it sees the edited file with the same variables."""
    path = tmp_path / "monitor.yaml"
    path.write_text(PROBE, encoding="utf-8")
    source = ConfigSource.file(path, environ={"TARGET": "127.0.0.1:7"}, kinds=PROBE_KINDS)
    assert len(source.load().probes) == 1
    path.write_text(PROBE + '  - {name: two, kind: tcp, target: "${TARGET}"}\n', encoding="utf-8")
    assert [p.name for p in source.load().probes] == ["edge", "two"]


def test_an_unset_variable_is_a_config_problem() -> None:
    """A variable neither the source nor the process sets is reported, as for files."""
    with pytest.raises(ConfigError) as caught:
        ConfigSource(text=PROBE, environ={}, name="demo.yaml", kinds=PROBE_KINDS).load()
    assert any("TARGET" in p for p in caught.value.problems)


def test_a_source_is_a_path_or_a_text() -> None:
    """Both or neither is a programming error, said at once."""
    with pytest.raises(ValueError, match="path or a text"):
        ConfigSource(kinds=PROBE_KINDS)
    with pytest.raises(ValueError, match="path or a text"):
        ConfigSource(path=Path("a.yaml"), text="probes: []", kinds=PROBE_KINDS)
