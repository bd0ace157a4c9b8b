"""monitor/metricspecs.py: every metric once, as a typed handle that mypy checks.

The handles carry the metric's type and its label names (from the label set's
signature); ``RunContext`` and ``Metrics.child`` take them, so a wrong type or
a wrong label name is a type error where a probe writes the sample.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mypy import api

from monitor.metricspecs import (
    HTTP_PHASES,
    HTTP_RESPONSES,
    PROBE_INFO,
    SPEC_BY_NAME,
    SPECS,
    VERDICT,
    GaugeSpec,
    no_labels,
)
from monitor.probes.base import RunContext

ROOT = Path(__file__).resolve().parents[2]


def test_label_names_come_from_the_label_sets_signature() -> None:
    assert HTTP_RESPONSES.labels == ("probe", "kind", "code", "origin")
    assert PROBE_INFO.labels == ("probe", "kind", "level", "layer", "service", "target")
    assert VERDICT.labels == ("state",)  # not a probe metric
    assert (HTTP_RESPONSES.type, HTTP_PHASES.type) == ("counter", "gauge")


def test_every_spec_is_collected_once_by_name() -> None:
    assert len(SPECS) == len(SPEC_BY_NAME) > 30
    assert all(SPEC_BY_NAME[spec.name] is spec for spec in SPECS)
    assert all(spec.name.startswith("monitor_") for spec in SPECS)
    assert all(spec.name.endswith("_total") for spec in SPECS if spec.type == "counter")


def test_a_label_set_with_a_positional_parameter_is_refused() -> None:
    def positional(code: str) -> None: ...
    with pytest.raises(TypeError, match="keyword-only"):
        GaugeSpec("monitor_x", "x", positional)
    assert GaugeSpec("monitor_y", "y", no_labels).labels == ("probe", "kind")


def test_a_sample_names_the_metric_and_its_labels() -> None:
    ctx = RunContext("p", "http")
    ctx.inc(HTTP_RESPONSES, code="503", origin="backend")
    ctx.observe(HTTP_PHASES, 0.25, phase="dns")
    result = ctx.success()
    assert [(s.metric, s.labels, s.value, s.op) for s in result.samples] == [
        ("monitor_http_responses_total", (("code", "503"), ("origin", "backend")), 1.0, "inc"),
        ("monitor_http_phase_duration_seconds", (("phase", "dns"),), 0.25, "observe"),
    ]


WRONG = '''
from monitor.metricspecs import (
    ATTRIBUTION_DROPPED, HTTP_PHASES, HTTP_RESPONSES, PROBE_SUCCESS, TLS_EXPIRY)
from monitor.metrics import Metrics
from monitor.probes.base import RunContext, zero

ctx = RunContext("p", "http")
ctx.inc(PROBE_SUCCESS)                                      # a gauge, not a counter
ctx.set(HTTP_RESPONSES, 1, code="200", origin="backend")    # a counter, not a gauge
ctx.inc(HTTP_RESPONSES, code="200")                         # origin missing
ctx.inc(HTTP_RESPONSES, code="200", origin="b", phase="x")  # a label it does not have
ctx.observe(HTTP_PHASES, 1.0, phaze="dns")                  # misspelt label
ctx.set(TLS_EXPIRY, 1.0, code="200")                        # no labels at all
zero(HTTP_RESPONSES, code="200", origni="b")                # misspelt in a zero series
ctx.inc(HTTP_RESPONSES, code="200", origin="backend")       # right
ctx.observe(HTTP_PHASES, 0.5, phase="dns")                  # right
Metrics.child(Metrics.__new__(Metrics), ATTRIBUTION_DROPPED, caus="x")  # misspelt
'''


def test_mypy_rejects_a_wrong_type_or_label_where_the_sample_is_written(
        tmp_path: Path) -> None:
    """Each wrong call is a type error on its own line; the right ones are not."""
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
    lines = {int(line.split(":")[1]) for line in out.splitlines() if "error:" in line}
    assert lines == {8, 9, 10, 11, 12, 13, 14, 17}, out
