"""docs/architecture.md: its contract tables name every metric, reason and alert of the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.metricspecs import SPECS
from monitor.probes.base import REASONS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".sh", ".toml", ".json"}


def _alerts() -> list[str]:
    names = []
    for path in sorted((ROOT / "config" / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names += [rule["alert"] for rule in group["rules"] if "alert" in rule]
    return names


@pytest.mark.parametrize("name", [spec.name for spec in SPECS])
def test_every_metric_is_in_the_metrics_table(name: str) -> None:
    """A metric added to SPECS without a row in the architecture's table fails here."""
    assert f"| `{name}` |" in DOC


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_is_explained(reason: str) -> None:
    """Each failure reason has a row saying what it means."""
    assert f"| `{reason}` |" in DOC


@pytest.mark.parametrize("alert", _alerts())
def test_every_alert_is_in_the_alerts_table(alert: str) -> None:
    """Each shipped alert is listed with its severity."""
    assert f"| {alert} |" in DOC


def test_nothing_cites_a_missing_design_file() -> None:
    """References point at docs/architecture.md, which is in the repository."""
    files = [p for part in ("monitor", "tests", "docs", "deploy", "config", "bench", "scripts")
             for p in (ROOT / part).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
    cited = [str(p.relative_to(ROOT)) for p in [*files, ROOT / "README.md"]
             if "DESIGN.md" in p.read_text(encoding="utf-8") and p.name != Path(__file__).name]
    assert cited == []


def test_the_metrics_table_names_no_removed_metric() -> None:
    """A row for a metric that SPECS no longer defines is a stale contract."""
    import re

    rows = set(re.findall(r"^\| `(monitor_[a-z_]+)` \|", DOC, flags=re.MULTILINE))
    assert rows - {spec.name for spec in SPECS} == set()
