"""The metric names as types: what a probe may pass to ``RunContext.inc/set/observe``.

``monitor/metrics.py`` defines each metric once (``SPECS``: type, help, labels,
buckets); these Literal unions name the same metrics by type, so mypy rejects a
misspelt name or the wrong kind (``inc`` on a gauge) where a probe writes it,
not the recorder at run time. tests/unit/test_metric_names.py fails when a
union and ``SPECS`` disagree. Label names stay checked at run time (the
recorder logs and skips a sample with a missing or extra label). Nothing here imports monitor:
probes use it without touching ``monitor.metrics``.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

CounterName: TypeAlias = Literal[
    "monitor_probe_runs_total",
    "monitor_probe_failures_total",
    "monitor_probe_skipped_total",
    "monitor_http_responses_total",
    "monitor_http_failure_attribution_total",
    "monitor_burst_connections_total",
    "monitor_lb_backend_responses_total",
    "monitor_load_requests_total",
    "monitor_attribution_dropped_total",
]

GaugeName: TypeAlias = Literal[
    "monitor_probe_info",
    "monitor_probe_interval_seconds",
    "monitor_probe_timeout_seconds",
    "monitor_probe_success",
    "monitor_probe_last_run_timestamp_seconds",
    "monitor_probe_consecutive_failures",
    "monitor_probe_objective_ratio",
    "monitor_http_phase_duration_seconds",
    "monitor_tls_cert_expiry_timestamp_seconds",
    "monitor_burst_capacity_concurrency",
    "monitor_burst_ramp_complete",
    "monitor_lb_address_success",
    "monitor_sql_app_timeout_seconds",
    "monitor_sql_connections_used",
    "monitor_sql_connections_max",
    "monitor_journey_step_success",
    "monitor_load_active",
    "monitor_verdict",
    "monitor_config_last_reload_success",
    "monitor_config_last_reload_timestamp_seconds",
    "monitor_build_info",
]

HistogramName: TypeAlias = Literal[
    "monitor_probe_duration_seconds",
    "monitor_burst_connect_duration_seconds",
    "monitor_sql_phase_duration_seconds",
    "monitor_sql_connect_duration_seconds",
    "monitor_sql_connect_app_timeout_ratio",
    "monitor_journey_step_duration_seconds",
    "monitor_load_latency_seconds",
    "monitor_scheduler_lag_seconds",
    "monitor_event_loop_lag_seconds",
]

# Gauges hold the last run's value, so a probe may observe into them as into a
# histogram (the recorder sets them): the per-phase durations of http and sql.
ObservedName: TypeAlias = HistogramName | GaugeName
MetricName: TypeAlias = CounterName | GaugeName | HistogramName
