"""monitor/exposition.py: the sliced /metrics text is generate_latest's, byte for byte."""

from __future__ import annotations

import random
from collections.abc import Iterator

from prometheus_client import Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from monitor.exposition import Exposition
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.metricspecs import SPECS


def fill(metrics: Metrics, rng: random.Random, probes: int) -> None:
    """Random values in every metric, label values with quotes, backslashes, newlines."""
    for spec in SPECS:
        metric = metrics.named(spec.name)
        for i in range(probes if spec.labels else 1):
            values = [f"v{i}" if n != "probe" else f'p{i}"\\\n' for n in spec.labels]
            child = metric.labels(*values) if spec.labels else metric
            if spec.type == "histogram":
                for _ in range(rng.randint(0, 5)):
                    child.observe(rng.expovariate(1.0))
            elif spec.type == "counter":
                child.inc(rng.randint(0, 10**6))
            else:
                child.set(rng.choice([0, 1, -2.5, 1e300, float("inf"), 1795241443.45]))


def test_identical_to_generate_latest_with_constant_labels() -> None:
    """Every metric filled at random, constant labels on: the same bytes."""
    rng = random.Random(7)
    registry = ConstLabelRegistry()
    metrics = Metrics(registry)
    fill(metrics, rng, probes=5)
    exposition = Exposition(registry)
    assert exposition.render() == generate_latest(registry).decode()
    registry.const_labels = {"env": "prod", "vantage": 'a"b'}  # a reload changes them
    assert exposition.render() == generate_latest(registry).decode()
    metrics.named("monitor_probe_runs_total").remove('p1"\\\n', "v1", "v1")  # a probe removed
    fill(metrics, rng, probes=2)
    assert exposition.render() == generate_latest(registry).decode()


async def test_streamed_slices_join_to_the_same_text() -> None:
    """The sliced rendering (many chunks at 200 probes) joins to generate_latest's text,
    which parses to the same samples."""
    registry = ConstLabelRegistry()
    registry.const_labels = {"env": "test"}
    metrics = Metrics(registry)
    fill(metrics, random.Random(1), probes=200)
    chunks = [chunk async for chunk in Exposition(registry).stream()]
    expected = generate_latest(registry).decode()
    assert len(chunks) > 1
    assert "".join(chunks) == expected
    parsed = [s for f in text_string_to_metric_families("".join(chunks)) for s in f.samples]
    assert parsed == [s for f in text_string_to_metric_families(expected) for s in f.samples]


def test_other_collectors_are_rendered_through_collect() -> None:
    """A custom collector (not a Counter, Gauge or Histogram of ours) appears as
    generate_latest shows it, constant labels included."""
    class Custom:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            family = GaugeMetricFamily("custom_value", "From collect().", labels=["a"])
            family.add_metric(["1"], 3.5)
            yield family

    registry = ConstLabelRegistry()
    registry.const_labels = {"env": "x"}
    registry.register(Custom())  # type: ignore[arg-type]
    Gauge("plain", "A plain gauge.", ["b"], registry=registry).labels("2").set(1)
    text = Exposition(registry).render()
    assert 'custom_value{a="1",env="x"} 3.5' in text
    assert text == generate_latest(registry).decode()


def test_names_select_the_samples_prometheus_client_selects() -> None:
    """`/metrics?name[]=...`: the same samples as prometheus_client's restricted registry,
    also for a part of a histogram."""
    registry = ConstLabelRegistry()
    registry.const_labels = {"env": "test"}
    fill(Metrics(registry), random.Random(3), probes=3)
    names = frozenset({"monitor_probe_info", "monitor_probe_duration_seconds_count",
                       "monitor_probe_runs_total", "monitor_event_loop_lag_seconds_bucket"})

    def samples(text: str) -> list[object]:
        return [s for f in text_string_to_metric_families(text) for s in f.samples]

    ours = samples(Exposition(registry).render(names))
    assert ours == samples(generate_latest(registry.restricted_registry(names)).decode())
    assert {s.name for s in ours} == names  # type: ignore[attr-defined]
