"""The probe examples in README.md are valid configs (docs that drift are bugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trustme

from monitor.config import parse_config
from monitor.probes import PROBE_KINDS

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
          if b.lstrip().startswith("- name:")]


def test_readme_has_probe_examples() -> None:
    """The README shows probe examples (so the next test checks something)."""
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[re.search(r"name: (\S+)", b)[1] for b in BLOCKS])
def test_readme_probe_example_loads(block: str, tmp_path: Path) -> None:
    """Each example loads as written (secrets from the environment or a file)."""
    secret = tmp_path / "db-password"
    secret.write_text("x")
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))  # loaded (so checked) at load time
    text = "probes:\n" + block.replace("/run/secrets/db-password", str(secret)) \
        .replace("/etc/monitor/cloudsql-ca.pem", str(ca))
    config = parse_config(text, environ={"PROBE_PASSWORD": "x"}, kinds=PROBE_KINDS)
    assert len(config.probes) == 1
