"""monitor/exitcodes.py: one enum of exit statuses, and the README's table says the same."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.exitcodes import VERDICT_EXIT, ExitCode

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_readme_table_lists_every_exit_status() -> None:
    """Each row `| N | `NAME` |` of the README matches the enum, and every member has a row."""
    rows = dict(re.findall(r"^\| (\d) \| `([A-Z_]+)` \|", README, flags=re.MULTILINE))
    assert {int(n): name for n, name in rows.items()} == {c.value: c.name for c in ExitCode}


def test_every_verdict_has_its_status() -> None:
    """check's verdicts map onto the documented numbers (deploy gates rely on them)."""
    assert {v: int(c) for v, c in VERDICT_EXIT.items()} == {
        "operational": 0, "broken": 1, "partial": 2, "inconclusive": 4}
