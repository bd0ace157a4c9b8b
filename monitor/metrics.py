"""Every metric of monitor, defined once with its help text and buckets.

The names, types and labels are a contract (docs/architecture.md, Metrics): alert
rules and dashboards read them. Nothing here imports the rest of monitor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

# Network and connect times: sub-second from 5 ms, then the TCP SYN
# retransmission steps (a lost SYN is resent after ~1 s, 3 s, 7 s), up to 60 s.
# Client-library defaults stop at 10 s, which hides exactly those stalls.
NETWORK_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)
# Whole runs: what the dashboards' p95 per probe needs, with the SYN
# retransmission steps (1, 3, 7 s) kept. 12 buckets where NETWORK_BUCKETS
# has 22: with one histogram per probe, buckets were most of /metrics.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 7.0, 15.0, 60.0)
# A duration as a fraction of a limit (SQL connect / app_timeout): fine around
# the 0.5 and 0.8 the rules and dashboards compare with, past 1 for the
# connects the application would have given up on.
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0)
# Scheduler and event-loop lag: healthy values are well below 10 ms.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Type = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Spec:
    name: str
    type: Type
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = NETWORK_BUCKETS

    @property
    def per_probe(self) -> bool:
        return "probe" in self.labels


P = ("probe", "kind")  # every probe metric carries both

SPECS: tuple[Spec, ...] = (
    # -- every probe ------------------------------------------------------
    Spec("monitor_probe_info", "gauge", "Always 1; the join dimensions of each probe.",
         ("probe", "kind", "level", "layer", "service", "target")),
    Spec("monitor_probe_interval_seconds", "gauge", "Configured interval between runs.", P),
    Spec("monitor_probe_timeout_seconds", "gauge", "Configured timeout of one run.", P),
    Spec("monitor_probe_success", "gauge", "1 if the last run succeeded, else 0.", P),
    Spec("monitor_probe_duration_seconds", "histogram", "Duration of probe runs.", P,
         buckets=RUN_BUCKETS),
    Spec("monitor_probe_runs_total", "counter", "Probe runs by result.", (*P, "result")),
    Spec("monitor_probe_failures_total", "counter", "Failed probe runs by reason.",
         (*P, "reason")),
    Spec("monitor_probe_skipped_total", "counter",
         "Runs not started because the previous one still ran or the run was missed.", P),
    Spec("monitor_probe_last_run_timestamp_seconds", "gauge",
         "When the last run finished, seconds since the epoch.", P),
    Spec("monitor_probe_consecutive_failures", "gauge",
         "Failed runs since the last successful one (0 after a success).", P),
    Spec("monitor_probe_objective_ratio", "gauge",
         "The probe's objective: the share of good runs and responses the alerts "
         "hold it to (its error budget is 1 - objective).", P),
    # -- http, lb, journey ------------------------------------------------
    Spec("monitor_http_responses_total", "counter",
         "Every HTTP response a probe got, by status code and origin.",
         (*P, "code", "origin")),
    # A gauge, not a histogram: 5 series per probe where buckets made 125,
    # and no rule reads phase quantiles (dashboards take them over time).
    Spec("monitor_http_phase_duration_seconds", "gauge",
         "HTTP request phases of the last run: dns, connect, proxy (CONNECT through "
         "proxy_url), tls, ttfb, transfer (0 for a phase the run did not reach).",
         (*P, "phase")),
    Spec("monitor_http_failure_attribution_total", "counter",
         "Failed runs by who produced the failure, from the platform's request logs "
         "(`attribution:`).", (*P, "attribution")),
    # -- tls --------------------------------------------------------------
    Spec("monitor_tls_cert_expiry_timestamp_seconds", "gauge",
         "Earliest notAfter in the presented chain, seconds since the epoch.", P),
    # -- burst ------------------------------------------------------------
    Spec("monitor_burst_connections_total", "counter",
         "Burst connections by concurrency step and outcome.", (*P, "step", "outcome")),
    Spec("monitor_burst_connect_duration_seconds", "histogram",
         "TCP connect time of burst connections.", P),
    Spec("monitor_burst_capacity_concurrency", "gauge",
         "Highest concurrency step that passed in the last run (0: none).", P),
    Spec("monitor_burst_ramp_complete", "gauge",
         "1 if every step passed (the knee lies above the top step).", P),
    # -- lb ---------------------------------------------------------------
    Spec("monitor_lb_backend_responses_total", "counter",
         "Load-balancer probe responses by backend and status code.", (*P, "backend", "code")),
    Spec("monitor_lb_address_success", "gauge",
         "1 if every request to the resolved address (by index) succeeded.", (*P, "address")),
    # -- sql --------------------------------------------------------------
    Spec("monitor_sql_phase_duration_seconds", "histogram",
         "SQL phases: connect, tls, startup, query.", (*P, "phase")),
    Spec("monitor_sql_connect_duration_seconds", "histogram",
         "Whole SQL connect (TCP, TLS, startup and auth).", P),
    Spec("monitor_sql_connect_app_timeout_ratio", "histogram",
         "Whole SQL connect as a fraction of the probe's app_timeout.", P,
         buckets=RATIO_BUCKETS),
    Spec("monitor_sql_app_timeout_seconds", "gauge",
         "The application's own connect timeout (config app_timeout).", P),
    Spec("monitor_sql_connections_used", "gauge", "Client connections in use on the server.", P),
    Spec("monitor_sql_connections_max", "gauge",
         "Connections the server accepts from clients (max less reserved slots).", P),
    # -- journey ----------------------------------------------------------
    Spec("monitor_journey_step_success", "gauge", "1 if the step succeeded in the last run.",
         (*P, "step")),
    Spec("monitor_journey_step_duration_seconds", "histogram", "Duration of journey steps.",
         (*P, "step")),
    # -- load -------------------------------------------------------------
    Spec("monitor_load_requests_total", "counter", "Load-test requests by status code.",
         (*P, "code")),
    Spec("monitor_load_latency_seconds", "histogram",
         "Load-test latency measured from each request's intended send time.", P),
    Spec("monitor_load_active", "gauge", "1 while a load test runs.", P),
    # -- the daemon -------------------------------------------------------
    Spec("monitor_verdict", "gauge", "1 for the current verdict state, 0 for the others.",
         ("state",)),
    Spec("monitor_scheduler_lag_seconds", "histogram",
         "Delay between a run's scheduled time and its start.", buckets=LAG_BUCKETS),
    Spec("monitor_event_loop_lag_seconds", "histogram",
         "How late the event loop wakes a timer.", buckets=LAG_BUCKETS),
    Spec("monitor_config_last_reload_success", "gauge", "1 if the last config load succeeded."),
    Spec("monitor_config_last_reload_timestamp_seconds", "gauge",
         "When the config was last loaded successfully."),
    Spec("monitor_build_info", "gauge", "Always 1; the running version.", ("version",)),
    Spec("monitor_attribution_dropped_total", "counter",
         "Attribution lookups not made: queue_full or rate_limited.", ("cause",)),
)

SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


def sample_names() -> set[str]:
    """Every name a query can use: the metrics and their histogram series."""
    names = set()
    for spec in SPECS:
        names.add(spec.name)
        if spec.type == "histogram":
            names.update(f"{spec.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
    return names
VERDICT_STATES = ("operational", "partial", "broken")


class ConstLabelRegistry(CollectorRegistry):
    """A registry that adds constant labels (`global.labels`) to every sample.

    prometheus_client has no constant labels; adding them at collection time
    lets a reload change them without recreating a single metric.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=True)
        self.const_labels: dict[str, str] = {}

    def restricted_registry(self, names: Iterable[str]) -> _Restricted:  # type: ignore[override]
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


class _Restricted:
    """The samples of ``registry`` whose names were asked for, with const labels."""

    def __init__(self, registry: ConstLabelRegistry, names: frozenset[str]) -> None:
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

    def __getitem__(self, name: str) -> Any:
        """The metric object; its type (Counter, Gauge, Histogram) follows its Spec."""
        return self._by_name[name]


def _create(spec: Spec, buckets: tuple[float, ...],
            registry: CollectorRegistry) -> MetricWrapperBase:
    if spec.type == "counter":
        # Counter appends _total itself.
        return LeanCounter(spec.name.removesuffix("_total"), spec.help, spec.labels,
                           registry=registry)
    if spec.type == "gauge":
        return LeanGauge(spec.name, spec.help, spec.labels, registry=registry)
    return LeanHistogram(spec.name, spec.help, spec.labels, buckets=buckets, registry=registry)


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
