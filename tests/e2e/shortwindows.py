"""Shipped rules with short windows, for end-to-end tests.

The e2e test loads the repository's own rule files into a real Prometheus
that scrapes and evaluates every 250 ms. Waiting 5m windows and 5m `for`
clauses would make the test take many minutes, so every duration in a rule
is rewritten through one table, ``SHORT``: range selectors (``[5m]``, also
those inside annotation queries) and ``for:`` values. Nothing else changes
(thresholds, guards, joins, labels, annotations' text), and the table keeps
the order of durations, so every relation the rules rely on still holds
(`for` equal to the rate window, the load look-back longer than a page's
window plus its `for`).

A duration missing from the table is an error, not a silent pass-through:
``tests/unit/test_rules.py`` runs the substitution over the shipped rules,
so a new window in a rule fails that test until the table covers it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "rules"

# Production duration -> e2e duration: 1/30 of the original, except the
# day-long look-back of MonitorDaemonDown (only needs to outlast the test).
SHORT: dict[str, str] = {
    "1m": "2s",
    "2m": "4s",
    "5m": "10s",
    "10m": "20s",
    "15m": "30s",
    "30m": "60s",
    "1h": "120s",
    "1d": "600s",
}

_RANGE = re.compile(r"\[(\d+[smhd])\]")


class UncoveredDuration(ValueError):
    """A rule uses a duration the table does not map."""


def seconds(duration: str) -> float:
    number, unit = float(duration[:-1]), duration[-1]
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _short(duration: str, where: str) -> str:
    try:
        return SHORT[duration]
    except KeyError:
        raise UncoveredDuration(f"{where}: duration {duration!r} is not in SHORT") from None


def shorten_text(text: str, where: str) -> str:
    """Rewrite every range selector ``[d]`` in ``text`` through ``SHORT``."""
    return _RANGE.sub(lambda m: f"[{_short(m.group(1), where)}]", text)


def durations_in(rules: dict[str, Any]) -> set[str]:
    """Every range-selector and `for` duration of a rule file."""
    found: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.update(_RANGE.findall(rule["expr"]))
            for text in rule.get("annotations", {}).values():
                found.update(_RANGE.findall(text))
            if "for" in rule:
                found.add(rule["for"])
    return found


def shorten(rules: dict[str, Any]) -> dict[str, Any]:
    """A copy of one parsed rule file with every duration shortened."""
    out: dict[str, Any] = {"groups": []}
    for group in rules["groups"]:
        new_group = {**group, "rules": []}
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            new = dict(rule)
            new["expr"] = shorten_text(rule["expr"], name)
            if "for" in rule:
                new["for"] = _short(rule["for"], name)
            if "annotations" in rule:
                new["annotations"] = {
                    key: shorten_text(value, name) for key, value in rule["annotations"].items()
                }
            new_group["rules"].append(new)
        out["groups"].append(new_group)
    return out


def write_short_rules(target: Path, source: Path = RULES_DIR) -> list[Path]:
    """Write every shipped rule file, shortened, into ``target``."""
    written = []
    for path in sorted(source.glob("*.yml")):
        rules = yaml.safe_load(path.read_text())
        out = target / path.name
        out.write_text(yaml.safe_dump(shorten(rules), sort_keys=False))
        written.append(out)
    return written
