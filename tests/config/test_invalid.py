"""Every file in tests/config/invalid/ fails to load with exactly the lines of its .txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config
from monitor.probes import PROBE_KINDS

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))
# Values the invalid configs read from the environment.
ENVIRON = {"DB_PASSWORD": "not-used-here"}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_config_reports_every_problem(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader lists each problem of the file, naming the probe and the YAML path."""
    expected = path.with_suffix(".txt").read_text().splitlines()
    monkeypatch.chdir(INVALID)  # messages name the file as given
    with pytest.raises(ConfigError) as raised:
        load_config(path.name, environ=ENVIRON, kinds=PROBE_KINDS)
    assert raised.value.problems == [line for line in expected if line.strip()]


def test_every_invalid_case_has_its_expected_message() -> None:
    """No case without its .txt, and no .txt without its case."""
    yamls = {p.stem for p in INVALID.glob("*.yaml")}
    texts = {p.stem for p in INVALID.glob("*.txt")}
    assert yamls == texts
    assert len(yamls) >= 10
