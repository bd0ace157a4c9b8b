"""The prometheus_client objects of the metrics ``monitor.metricspecs`` defines.

One registry per daemon (no global state), constant labels added at
collection, values without locks. Nothing here imports the rest of monitor
but the specs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ParamSpec, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import RestrictedRegistry

from monitor.leanmetrics import LeanCounter, LeanGauge, LeanHistogram
from monitor.metricspecs import SPECS, CounterSpec, GaugeSpec, HistogramSpec, Spec

L = ParamSpec("L")


class ConstLabelRegistry(CollectorRegistry):
    """A registry that adds constant labels (`global.labels`) to every sample.

    prometheus_client has no constant labels; adding them at collection time
    lets a reload change them without recreating a single metric.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=True)
        self.const_labels: dict[str, str] = {}

    def restricted_registry(self, names: Iterable[str]) -> RestrictedRegistry:
        """`/metrics?name[]=...`: prometheus_client's own version skips collect()."""
        return _Restricted(self, frozenset(names))

    def collect(self) -> Iterator[Metric]:
        labels = dict(self.const_labels)
        for metric in super().collect():
            # _created series double the series count and no rule reads them
            # (dropped here rather than by the process-wide switch).
            samples = [s for s in metric.samples if not s.name.endswith("_created")]
            if labels:
                samples = [s._replace(labels={**s.labels, **labels}) for s in samples]
            metric.samples = samples
            yield metric


class _Restricted(RestrictedRegistry):
    """The samples of ``registry`` whose names were asked for, with const labels
    (its own collect(), which the base class would bypass)."""

    def __init__(self, registry: ConstLabelRegistry, names: frozenset[str]) -> None:
        super().__init__(names, registry)
        self.registry = registry
        self.names = names

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            samples = [s for s in metric.samples if s.name in self.names]
            if samples:
                metric.samples = samples
                yield metric


class Metrics:
    """The metric objects, created on one registry (no global state)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._by_name: dict[str, MetricWrapperBase] = {
            spec.name: _create(spec, spec.buckets, registry) for spec in SPECS
        }

    def named(self, name: str) -> MetricWrapperBase:
        """The metric object of ``name`` (the recorder writes samples by name)."""
        return self._by_name[name]

    @overload
    def child(self, spec: CounterSpec[L], *args: L.args, **labels: L.kwargs) -> Counter: ...
    @overload
    def child(self, spec: GaugeSpec[L], *args: L.args, **labels: L.kwargs) -> Gauge: ...
    @overload
    def child(self, spec: HistogramSpec[L], *args: L.args, **labels: L.kwargs) -> Histogram: ...

    def child(self, spec: Spec[Any], *args: Any, **labels: Any) -> MetricWrapperBase:
        """The series of a daemon metric (``per_probe`` is false: the recorder
        writes the probes') with ``labels``; mypy checks the label names and
        the type of what is returned (a metric without labels is its own
        series)."""
        if spec.per_probe:
            raise ValueError(f"{spec.name} is a probe metric: the recorder writes it")
        metric = self._by_name[spec.name]
        return metric.labels(**labels) if labels else metric


def _create(spec: Spec[Any], buckets: tuple[float, ...],
            registry: CollectorRegistry) -> MetricWrapperBase:
    if spec.type == "counter":
        # Counter appends _total itself.
        return LeanCounter(spec.name.removesuffix("_total"), spec.help, spec.labels,
                           registry=registry)
    if spec.type == "gauge":
        return LeanGauge(spec.name, spec.help, spec.labels, registry=registry)
    return LeanHistogram(spec.name, spec.help, spec.labels, buckets=buckets, registry=registry)
