"""The queries of the committed Grafana dashboards, ready to send to Prometheus.

Shared by tests/unit/test_dashboards.py (static checks) and the end-to-end
test (every query returns data from a real Prometheus).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
TEMPLATE_VARIABLES = ("datasource", "job", "vantage", "service", "probe")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    # Needs `attribution:` or Google Cloud metrics (docs/correlation.md): no
    # data in a stack without them.
    optional: bool = False

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref}"


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text())
            for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries() -> list[PanelQuery]:
    out = []
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                out.append(PanelQuery(name, panel["title"], target["refId"], target["expr"],
                                      panel.get("description", "").startswith("Optional")))
    return out


def expand(expr: str, rate_interval: str = "1m", **values: str) -> str:
    """The query as Grafana sends it with every variable at "All" (or ``values``)."""
    chosen = {"job": ".*", "vantage": ".*", "service": ".*", "probe": ".*", **values}
    expr = expr.replace("$__rate_interval", rate_interval)
    for name, value in chosen.items():
        expr = expr.replace(f"${name}", value)
    return expr
