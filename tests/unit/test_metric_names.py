"""monitor/metricnames.py: the typed metric names agree with SPECS, and mypy uses them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import pytest
from mypy import api

from monitor.metricnames import CounterName, GaugeName, HistogramName
from monitor.metrics import SPECS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("alias", "kind"), [
    pytest.param(CounterName, "counter", id="counters"),
    pytest.param(GaugeName, "gauge", id="gauges"),
    pytest.param(HistogramName, "histogram", id="histograms"),
])
def test_each_union_names_exactly_the_specs_of_its_type(alias: object, kind: str) -> None:
    """A metric added to SPECS (or retyped) without its name in the union fails here."""
    assert sorted(get_args(alias)) == sorted(s.name for s in SPECS if s.type == kind)


WRONG = '''
from monitor.probes.base import RunContext

ctx = RunContext("p", "http")
ctx.inc("monitor_probe_success")                     # a gauge, not a counter
ctx.set("monitor_http_responses_total", 1)           # a counter, not a gauge
ctx.observe("monitor_http_response_total", 1.0)      # misspelt
ctx.inc("monitor_http_responses_total", code="200")  # right
'''


def test_mypy_rejects_a_wrong_kind_or_name(tmp_path: Path) -> None:
    """The three wrong calls are type errors where they are written; the right one is not."""
    module = tmp_path / "wrong_metrics.py"
    module.write_text(WRONG, encoding="utf-8")
    limit = sys.getrecursionlimit()
    try:
        out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                    "--cache-dir", str(tmp_path / "cache"), str(module)])
    finally:
        # mypy raises it to 2**14 for good; a later test (a regex nested too
        # deeply to compile, tests/config) relies on the default.
        sys.setrecursionlimit(limit)
    assert status == 1, out + err
    lines = [line for line in out.splitlines() if "error:" in line]
    assert [line.split(":")[1] for line in lines] == ["5", "6", "7"], out
    assert all('Argument 1 to "' in line for line in lines), out
