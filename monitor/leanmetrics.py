"""prometheus_client's Counter, Gauge and Histogram with lock-free values.

With ``monitor/exposition.py`` (which reads the values back), the only module
that touches prometheus_client's internals (``_metric_init``, ``_value``,
``_buckets``, ``_sum``): the dependency is pinned to the minor tested
(pyproject.toml) and tests/unit/test_exposition.py fails first if a release
changes them. Nothing here imports monitor.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram


class _Value:
    """A float without a lock, in place of prometheus_client's MutexValue.

    Every metric of the daemon is written and read on the event loop's
    thread (the exposition reads values between two statements of a probe),
    so a lock per value guards nothing; MutexValue with its lock took about
    110 bytes a value, 47 values per http probe: 5 MiB at 1000 probes.
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0.0

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def get(self) -> float:
        return self._value

    def set_exemplar(self, exemplar: Any) -> None:
        raise NotImplementedError("monitor's metrics keep no exemplars")

    def get_exemplar(self) -> None:
        return None


class LeanCounter(Counter):
    def _metric_init(self) -> None:
        super()._metric_init()
        self._value = _Value()


class LeanGauge(Gauge):
    def _metric_init(self) -> None:
        super()._metric_init()
        self._value = _Value()


class LeanHistogram(Histogram):
    def _metric_init(self) -> None:
        super()._metric_init()
        self._buckets = [_Value() for _ in self._buckets]
        self._sum = _Value()
