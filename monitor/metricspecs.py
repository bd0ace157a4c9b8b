"""Every metric of monitor, defined once: name, type, help, label names, buckets.

Each metric is a typed handle (``HTTP_RESPONSES``): a ``CounterSpec``,
``GaugeSpec`` or ``HistogramSpec`` generic over the signature of its label
set. ``RunContext.inc/set/observe`` take the handle and the labels as keyword
arguments, so mypy rejects, where a probe writes a sample, a counter passed
to ``set``, a label name misspelt, missing or extra:

    ctx.inc(HTTP_RESPONSES, code="200", origin="backend")   # checked by mypy

The label names are read from the label set's signature, once, so the
signature is the only place they are written. ``monitor/metrics.py`` builds
prometheus_client objects from ``SPECS``; the names, types and labels are a
contract (docs/architecture.md, Metrics) that alert rules and dashboards
read. Nothing here imports monitor or prometheus_client: probes use it
without touching ``monitor.metrics``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, ParamSpec, TypeAlias

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

VERDICT_STATES = ("operational", "partial", "broken")

Type = Literal["counter", "gauge", "histogram"]
# Every probe metric carries both; the recorder fills them in.
PROBE_LABELS = ("probe", "kind")

L = ParamSpec("L")  # the label set: keyword-only parameters, one per label


class Spec(Generic[L]):
    """One metric. ``labels`` are all its label names, ``probe`` and ``kind``
    first for a per-probe metric; ``label_set`` names the others by its
    keyword-only parameters (its body is never called)."""

    type: Type
    __slots__ = ("buckets", "help", "labels", "name", "per_probe")

    def __init__(self, name: str, help: str, label_set: Callable[L, None], *,
                 per_probe: bool = True, buckets: tuple[float, ...] = NETWORK_BUCKETS) -> None:
        own = tuple(inspect.signature(label_set).parameters.values())
        if any(p.kind is not inspect.Parameter.KEYWORD_ONLY for p in own):
            raise TypeError(f"{name}: label set parameters must be keyword-only")
        self.name = name
        self.help = help
        self.per_probe = per_probe
        self.labels = (PROBE_LABELS if per_probe else ()) + tuple(p.name for p in own)
        self.buckets = buckets

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class CounterSpec(Spec[L]):
    type = "counter"


class GaugeSpec(Spec[L]):
    type = "gauge"


class HistogramSpec(Spec[L]):
    type = "histogram"


# Metrics whose one label is `phase` (a probe's phase_metric; mypy cannot
# spell that label set in a class variable's type, the recorder checks it).
PhaseSpec: TypeAlias = "HistogramSpec[Any] | GaugeSpec[Any]"


# -- label sets (signatures only) --------------------------------------------
def no_labels() -> None: ...
def info_labels(*, level: str, layer: str, service: str, target: str) -> None: ...
def result_labels(*, result: str) -> None: ...
def reason_labels(*, reason: str) -> None: ...
def response_labels(*, code: str, origin: str) -> None: ...
def phase_labels(*, phase: str) -> None: ...
def attribution_labels(*, attribution: str) -> None: ...
def burst_labels(*, step: str, outcome: str) -> None: ...
def backend_labels(*, backend: str, code: str) -> None: ...
def address_labels(*, address: str) -> None: ...
def step_labels(*, step: str) -> None: ...
def code_labels(*, code: str) -> None: ...
def state_labels(*, state: str) -> None: ...
def version_labels(*, version: str) -> None: ...
def cause_labels(*, cause: str) -> None: ...


# -- every probe ----------------------------------------------------------------
PROBE_INFO: Final = GaugeSpec(
    "monitor_probe_info", "Always 1; the join dimensions of each probe.", info_labels)
PROBE_INTERVAL: Final = GaugeSpec(
    "monitor_probe_interval_seconds", "Configured interval between runs.", no_labels)
PROBE_TIMEOUT: Final = GaugeSpec(
    "monitor_probe_timeout_seconds", "Configured timeout of one run.", no_labels)
PROBE_SUCCESS: Final = GaugeSpec(
    "monitor_probe_success", "1 if the last run succeeded, else 0.", no_labels)
PROBE_DURATION: Final = HistogramSpec(
    "monitor_probe_duration_seconds", "Duration of probe runs.", no_labels,
    buckets=RUN_BUCKETS)
PROBE_RUNS: Final = CounterSpec(
    "monitor_probe_runs_total", "Probe runs by result.", result_labels)
PROBE_FAILURES: Final = CounterSpec(
    "monitor_probe_failures_total", "Failed probe runs by reason.", reason_labels)
PROBE_SKIPPED: Final = CounterSpec(
    "monitor_probe_skipped_total",
    "Runs not started because the previous one still ran or the run was missed.", no_labels)
PROBE_LAST_RUN: Final = GaugeSpec(
    "monitor_probe_last_run_timestamp_seconds",
    "When the last run finished, seconds since the epoch.", no_labels)
PROBE_CONSECUTIVE_FAILURES: Final = GaugeSpec(
    "monitor_probe_consecutive_failures",
    "Failed runs since the last successful one (0 after a success).", no_labels)
PROBE_OBJECTIVE: Final = GaugeSpec(
    "monitor_probe_objective_ratio",
    "The probe's objective: the share of good runs and responses the alerts "
    "hold it to (its error budget is 1 - objective).", no_labels)
# -- http, lb, journey ------------------------------------------------------------
HTTP_RESPONSES: Final = CounterSpec(
    "monitor_http_responses_total",
    "Every HTTP response a probe got, by status code and origin.", response_labels)
# A gauge, not a histogram: 5 series per probe where buckets made 125,
# and no rule reads phase quantiles (dashboards take them over time).
HTTP_PHASES: Final = GaugeSpec(
    "monitor_http_phase_duration_seconds",
    "HTTP request phases of the last run: dns, connect, proxy (CONNECT through "
    "proxy_url), tls, ttfb, transfer (0 for a phase the run did not reach).", phase_labels)
HTTP_ATTRIBUTION: Final = CounterSpec(
    "monitor_http_failure_attribution_total",
    "Failed runs by who produced the failure, from the platform's request logs "
    "(`attribution:`).", attribution_labels)
# -- tls ----------------------------------------------------------------------------
TLS_EXPIRY: Final = GaugeSpec(
    "monitor_tls_cert_expiry_timestamp_seconds",
    "Earliest notAfter in the presented chain, seconds since the epoch.", no_labels)
# -- burst --------------------------------------------------------------------------
BURST_CONNECTIONS: Final = CounterSpec(
    "monitor_burst_connections_total",
    "Burst connections by concurrency step and outcome.", burst_labels)
BURST_CONNECT: Final = HistogramSpec(
    "monitor_burst_connect_duration_seconds", "TCP connect time of burst connections.",
    no_labels)
BURST_CAPACITY: Final = GaugeSpec(
    "monitor_burst_capacity_concurrency",
    "Highest concurrency step that passed in the last run (0: none).", no_labels)
BURST_COMPLETE: Final = GaugeSpec(
    "monitor_burst_ramp_complete",
    "1 if every step passed (the knee lies above the top step).", no_labels)
# -- lb -------------------------------------------------------------------------------
LB_BACKEND_RESPONSES: Final = CounterSpec(
    "monitor_lb_backend_responses_total",
    "Load-balancer probe responses by backend and status code.", backend_labels)
LB_ADDRESS_SUCCESS: Final = GaugeSpec(
    "monitor_lb_address_success",
    "1 if every request to the resolved address (by index) succeeded.", address_labels)
# -- sql ------------------------------------------------------------------------------
SQL_PHASES: Final = HistogramSpec(
    "monitor_sql_phase_duration_seconds", "SQL phases: connect, tls, startup, query.",
    phase_labels)
SQL_CONNECT: Final = HistogramSpec(
    "monitor_sql_connect_duration_seconds",
    "Whole SQL connect (TCP, TLS, startup and auth).", no_labels)
SQL_CONNECT_RATIO: Final = HistogramSpec(
    "monitor_sql_connect_app_timeout_ratio",
    "Whole SQL connect as a fraction of the probe's app_timeout.", no_labels,
    buckets=RATIO_BUCKETS)
SQL_APP_TIMEOUT: Final = GaugeSpec(
    "monitor_sql_app_timeout_seconds",
    "The application's own connect timeout (config app_timeout).", no_labels)
SQL_CONNECTIONS_USED: Final = GaugeSpec(
    "monitor_sql_connections_used", "Client connections in use on the server.", no_labels)
SQL_CONNECTIONS_MAX: Final = GaugeSpec(
    "monitor_sql_connections_max",
    "Connections the server accepts from clients (max less reserved slots).", no_labels)
# -- journey --------------------------------------------------------------------------
JOURNEY_STEP_SUCCESS: Final = GaugeSpec(
    "monitor_journey_step_success", "1 if the step succeeded in the last run.", step_labels)
JOURNEY_STEP_DURATION: Final = HistogramSpec(
    "monitor_journey_step_duration_seconds", "Duration of journey steps.", step_labels)
# -- load -----------------------------------------------------------------------------
LOAD_REQUESTS: Final = CounterSpec(
    "monitor_load_requests_total", "Load-test requests by status code.", code_labels)
LOAD_LATENCY: Final = HistogramSpec(
    "monitor_load_latency_seconds",
    "Load-test latency measured from each request's intended send time.", no_labels)
LOAD_ACTIVE: Final = GaugeSpec("monitor_load_active", "1 while a load test runs.", no_labels)
# -- the daemon -----------------------------------------------------------------------
VERDICT: Final = GaugeSpec(
    "monitor_verdict", "1 for the current verdict state, 0 for the others.", state_labels,
    per_probe=False)
SCHEDULER_LAG: Final = HistogramSpec(
    "monitor_scheduler_lag_seconds", "Delay between a run's scheduled time and its start.",
    no_labels, per_probe=False, buckets=LAG_BUCKETS)
EVENT_LOOP_LAG: Final = HistogramSpec(
    "monitor_event_loop_lag_seconds", "How late the event loop wakes a timer.", no_labels,
    per_probe=False, buckets=LAG_BUCKETS)
CONFIG_RELOAD_SUCCESS: Final = GaugeSpec(
    "monitor_config_last_reload_success", "1 if the last config load succeeded.", no_labels,
    per_probe=False)
CONFIG_RELOAD_TIMESTAMP: Final = GaugeSpec(
    "monitor_config_last_reload_timestamp_seconds",
    "When the config was last loaded successfully.", no_labels, per_probe=False)
BUILD_INFO: Final = GaugeSpec(
    "monitor_build_info", "Always 1; the running version.", version_labels, per_probe=False)
ATTRIBUTION_DROPPED: Final = CounterSpec(
    "monitor_attribution_dropped_total",
    "Attribution lookups not made: queue_full or rate_limited.", cause_labels,
    per_probe=False)

# Every metric, in the order of the docs' table.
SPECS: tuple[Spec[Any], ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, Spec))
SPEC_BY_NAME: dict[str, Spec[Any]] = {spec.name: spec for spec in SPECS}
if len(SPEC_BY_NAME) != len(SPECS):
    raise TypeError("two metric specs share a name")


def sample_names() -> set[str]:
    """Every name a query can use: the metrics and their histogram series."""
    names = set()
    for spec in SPECS:
        names.add(spec.name)
        if spec.type == "histogram":
            names.update(f"{spec.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
    return names
