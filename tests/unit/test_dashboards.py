"""The committed Grafana dashboards (grafana/dashboards/*.json).

They must equal the generator's output, read only metrics of
monitor/metricspecs.py or the recording rules, take their data source and
filters from template variables, and every query must parse as PromQL.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.metricspecs import sample_names
from tests.e2e.dashboards import (
    DASHBOARDS_DIR,
    TEMPLATE_VARIABLES,
    PanelQuery,
    dashboards,
    expand,
    panel_queries,
    panels,
)
from tests.support.external import needs

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
RULES = sorted((ROOT / "config" / "prometheus" / "rules").glob("*.yml"))

needs_sdk = pytest.mark.skipif(
    importlib.util.find_spec("grafana_foundation_sdk") is None,
    reason="needs grafana-foundation-sdk (pip install -e '.[dashboards]')")


def defined_metrics() -> set[str]:
    return sample_names()


def recorded() -> set[str]:
    return {rule["record"] for path in RULES
            for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "record" in rule}


QUERIES = panel_queries()
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


@needs_sdk
def test_committed_json_equals_the_generator_output() -> None:
    """grafana/generate.py --check: the JSON in the repo is what the generator writes."""
    spec = importlib.util.spec_from_file_location("generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    generate: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert set(generate.DASHBOARDS) == {p.stem for p in DASHBOARDS_DIR.glob("*.json")}
    for name in generate.DASHBOARDS:
        assert generate.render(name) == (DASHBOARDS_DIR / f"{name}.json").read_text(), name


def test_there_are_the_four_dashboards() -> None:
    """overview, capacity, golden path and the daemon, each with a unique uid."""
    boards = dashboards()
    assert set(boards) == {"overview", "capacity", "golden-path", "daemon"}
    assert len({b["uid"] for b in boards.values()}) == 4


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_has_the_template_variables(name: str) -> None:
    """Variables datasource, job, vantage, service and probe, in that order."""
    names = [v["name"] for v in dashboards()[name]["templating"]["list"]]
    assert names == list(TEMPLATE_VARIABLES)


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_panel_and_query_takes_the_datasource_variable(name: str) -> None:
    """No hard-coded data source uid: any Prometheus works."""
    for panel in panels(dashboards()[name]):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_panel_ids_are_unique(name: str) -> None:
    """Grafana needs unique panel ids (rows included)."""
    ids = [p["id"] for p in dashboards()[name]["panels"]]
    ids += [p["id"] for row in dashboards()[name]["panels"] for p in row.get("panels", [])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_queries_read_only_defined_metrics(query: PanelQuery) -> None:
    """Metric names come from monitor/metricspecs.py or the recording rules, nothing else."""
    expr = query.expr
    unknown = set(RECORDED.findall(expr)) - recorded()
    names = set(re.findall(r"\b(monitor_[a-z0-9_]+)\b", RECORDED.sub(" ", expr)))
    unknown |= names - defined_metrics()
    assert not unknown
    assert names or RECORDED.search(expr)


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_probe_queries_filter_by_the_template_variables(query: PanelQuery) -> None:
    """Every selector filters by $job and $vantage; probe metrics also by $probe."""
    for selector in re.findall(r"\{([^}]*)\}", query.expr):
        if "probe=" in selector or "$probe" in selector:
            assert 'probe=~"$probe"' in selector
        assert 'job=~"$job"' in selector and 'vantage=~"$vantage"' in selector


@needs("promtool", install="apt-get install prometheus")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """Each query, with its variables expanded, is valid PromQL (promtool check rules)."""
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": expand(q.expr)}
        for i, q in enumerate(QUERIES)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_loads_the_datasource_and_the_dashboards() -> None:
    """grafana/provisioning/ has a Prometheus data source and a file provider."""
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/monitor-prometheus.yml").read_text())
    assert ds["apiVersion"] == 1
    assert [d["type"] for d in ds["datasources"]] == ["prometheus"]
    dash = yaml.safe_load((GRAFANA / "provisioning/dashboards/monitor.yml").read_text())
    (provider,) = dash["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_optional_panels_are_the_platform_rows() -> None:
    """Panels that need attribution or Google Cloud metrics say so and sit in the
    optional rows; every other panel must show data in the end-to-end test."""
    optional = {(q.dashboard, q.panel) for q in QUERIES if q.optional}
    assert {d for d, _ in optional} == {"overview", "capacity"}
    for name, board in dashboards().items():
        row = ""
        for panel in board["panels"]:  # rows are open: their panels follow them
            if panel.get("type") == "row":
                row = panel["title"]
                continue
            assert ((name, panel["title"]) in optional) == row.startswith("Optional"), (
                name, panel["title"])
