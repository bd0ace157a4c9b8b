"""Generate grafana/dashboards/*.json from Python (grafana-foundation-sdk).

    pip install -e '.[dashboards]'     # grafana-foundation-sdk, Grafana 11.6 build
    python grafana/generate.py         # rewrites grafana/dashboards/*.json
    python grafana/generate.py --check # exit 1 when the committed JSON differs

The JSON is committed; tests/unit/test_dashboards.py fails when it differs
from this script's output, and checks that every query reads only metrics
of monitor/metricspecs.py or the recording rules in config/prometheus/rules/.

Every panel takes its data source from the `datasource` variable (any
Prometheus, by uid) and filters by the template variables job, vantage,
service and probe. Probe metrics carry no service label: `probe` is chosen
among the probes of the selected services (monitor_probe_info), and its
"All" expands to exactly those probes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import BigValueTextMode, StackingMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUT = Path(__file__).resolve().parent / "dashboards"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Selectors: the daemon's series, and a probe's series.
D = 'job=~"$job",vantage=~"$vantage"'
S = f'{D},probe=~"$probe"'
RI = "$__rate_interval"
# Join dimensions of the probes of the selected services.
INFO = ("max by (job, vantage, probe, layer, service) "
        f'(monitor_probe_info{{{D},service=~"$service"}})')

Builder = Any  # the SDK's panel builders share no public base with these methods


# -- building blocks ---------------------------------------------------------
def query(expr: str, legend: str = "", ref: str = "A", fmt: PromQueryFormat | None = None,
          instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if fmt is not None:
        q = q.format(fmt)
    if instant:
        q = q.instant()
    return q


def panel(kind: Callable[[], Builder], title: str, description: str,
          targets: list[prometheus.Dataquery], *, unit: str = "", width: int = 12,
          height: int = 8) -> Builder:
    p = kind().title(title).description(description).datasource(DS).span(width).height(height)
    for target in targets:
        p = p.with_target(target)
    if unit:
        p = p.unit(unit)
    return p


def ts(title: str, description: str, *targets: prometheus.Dataquery, unit: str = "",
       width: int = 12, height: int = 8, stack: bool = False) -> Builder:
    p = panel(timeseries.Panel, title, description, list(targets), unit=unit, width=width,
              height=height)
    if stack:
        p = p.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    return p


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps])


def value_map(mapping: dict[str, tuple[str, str]]) -> list[model.ValueMapping]:
    return [model.ValueMap(options={
        key: model.ValueMappingResult(text=text, color=color, index=i)
        for i, (key, (text, color)) in enumerate(mapping.items())})]


def variables() -> list[Builder]:
    def labels(name: str, label: str, query_: str, *, all_value: str | None) -> Builder:
        v = (dashboard.QueryVariable(name).label(label).datasource(DS)
             .query({"query": query_, "refId": f"{name}-var", "qryType": 1})
             .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
             .sort(model.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
             .current(model.VariableOption(selected=True, text=["All"], value=["$__all"])))
        if all_value is not None:
            v = v.all_value(all_value)
        return v

    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # ".*" also matches series without the label (a daemon without vantage).
        labels("job", "job", "label_values(monitor_build_info, job)", all_value=".*"),
        labels("vantage", "vantage", 'label_values(monitor_build_info{job=~"$job"}, vantage)',
               all_value=".*"),
        labels("service", "service",
                f"label_values(monitor_probe_info{{{D}}}, service)", all_value=".*"),
        # No custom "All": it expands to the probes of the selected services.
        labels("probe", "probe",
               f'label_values(monitor_probe_info{{{D},service=~"$service"}}, probe)',
               all_value=None),
    ]


def board(uid: str, title: str, description: str, rows: list[tuple[str, list[Builder]]]) -> Any:
    b = (dashboard.Dashboard(title).uid(uid).description(description)
         .tags(["monitor"]).editable().time("now-6h", "now").refresh("30s")
         .timezone("browser").tooltip(model.DashboardCursorSync.CROSSHAIR)
         .variables(variables())
         .link(dashboard.DashboardLink("monitor").type(model.DashboardLinkType.DASHBOARDS)
               .tags(["monitor"]).as_dropdown(True).include_vars(True).keep_time(True)))
    ids = iter(range(1, 1000))  # Grafana wants unique panel ids
    for row_title, panels in rows:
        b = b.with_row(dashboard.Row(row_title).id(next(ids)))
        for p in panels:
            b = b.with_panel(p.id(next(ids)))
    return b.build()


def ratio(num: str, den: str, by: str) -> str:
    return f"sum by ({by}) ({num})\n/\nsum by ({by}) ({den})"


# -- the dashboards ----------------------------------------------------------
def overview() -> Any:
    verdict = (panel(stat.Panel, "Verdict",
                     "The daemon's verdict over its window: operational, partial (level 4 "
                     "fails), broken (a level 1-3 probe confidently fails).",
                     [query(f'max by (vantage, state) (monitor_verdict{{{D}}}) == 1',
                            "{{vantage}} {{state}}", instant=True)], width=6, height=6)
               .mappings(value_map({"1": ("", "green")}))
               .text_mode(BigValueTextMode.NAME))
    layers = (panel(stat.Panel, "Success ratio by layer (5m)",
                    "Share of successful runs of the selected probes over 5m, by layer: "
                    "edge (load balancer), service, egress (VPC connector), database.",
                    [query(ratio(
                        f"rate(monitor_probe_runs_total{{{S},result=\"success\"}}[5m])"
                        f" * on (job, vantage, probe) group_left (layer) {INFO}",
                        f"rate(monitor_probe_runs_total{{{S}}}[5m])"
                        f" * on (job, vantage, probe) group_left (layer) {INFO}",
                        "layer"), "{{layer}}", instant=True)],
                    unit="percentunit", width=18, height=6)
              .thresholds(thresholds((None, "red"), (0.95, "orange"), (0.99, "green")))
              .min(0).max(1))
    burning = (
        "(probe:monitor_probe_failed_runs:burning or probe:monitor_http_errors:burning"
        f" or max by (job, vantage, probe) (monitor_probe_consecutive_failures{{{S}}}) >= 4)")
    failing_layers = (panel(stat.Panel, "Layers failing now (what pages)",
                            "Probes of each layer whose failures page now: the last 4 runs "
                            "failed, or failed runs or 5xx/429 burn the error budget "
                            "(MonitorProbeDown, MonitorProbeFailing, "
                            "MonitorHTTPErrorRatioHigh; levels 1 and 2).",
                            [query(f"count by (layer) ({burning}\n"
                                   "  * on (job, vantage, probe) group_left (layer) "
                                   f"probe:monitor_probe_pages:info{{{S}}})\n"
                                   "or 0 * count by (layer) "
                                   f"(probe:monitor_probe_pages:info{{{S}}})",
                                   "{{layer}}", instant=True)],
                            unit="short", width=24, height=5)
                      .thresholds(thresholds((None, "green"), (1, "red"))))
    run_burn = (ts(
        "Failed runs: burn rate",
        "What MonitorProbeFailing reads: the failed share of runs over 2m and 30m divided "
        "by the error budget. It pages at 20x over 2m (at least 5 failed runs) or 3x over "
        "30m (at least 12).",
        query(f"probe:monitor_probe_failed_runs:burn_rate2m{{{S}}}", "{{vantage}} {{probe}} 2m"),
        query(f"probe:monitor_probe_failed_runs:burn_rate30m{{{S}}}",
              "{{vantage}} {{probe}} 30m", "B"),
        unit="short")
        .thresholds(thresholds((None, "green"), (3, "orange"), (20, "red"))))
    streak = (ts(
        "Consecutive failed runs",
        "Failed runs since the last success: MonitorProbeDown pages at 4.",
        query(f"max by (vantage, probe) (monitor_probe_consecutive_failures{{{S}}})",
              "{{vantage}} {{probe}}"),
        unit="short")
        .thresholds(thresholds((None, "green"), (4, "red"))))
    success = (panel(statetimeline.Panel, "Probe success (last run)",
                     "1 when the probe's last run succeeded.",
                     [query(f"max by (vantage, probe) (monitor_probe_success{{{S}}})",
                            "{{vantage}} {{probe}}")], width=24, height=8)
               .mappings(value_map({"0": ("failing", "red"), "1": ("ok", "green")})))
    errors_by_code = ts(
        "5xx/429 ratio by code and origin",
        "Share of each probe's HTTP responses that were 5xx or 429, by status code and "
        "origin (a 5xx without the application's header came from the platform).",
        query(f"sum by (vantage, probe, code, origin) (rate(monitor_http_responses_total"
              f"{{{S},code=~\"5..|429\"}}[{RI}]))\n/ on (vantage, probe) group_left ()\n"
              f"sum by (vantage, probe) (rate(monitor_http_responses_total{{{S}}}[{RI}]))",
              "{{probe}} {{code}} {{origin}}"),
        unit="percentunit", stack=True)
    page_ratio = (ts(
        "5xx/429 burn rate: the page",
        "What MonitorHTTPErrorRatioHigh reads: the 5xx/429 share over 2m and 30m divided "
        "by the probe's error budget (1 - objective). It pages at 20x over 2m (with at "
        "least 5 errors) or 3x over 30m (at least 12).",
        query(f"probe:monitor_http_errors:burn_rate2m{{{S}}}", "{{vantage}} {{probe}} 2m"),
        query(f"probe:monitor_http_errors:burn_rate30m{{{S}}}", "{{vantage}} {{probe}} 30m",
              "B"),
        unit="short")
        .thresholds(thresholds((None, "green"), (3, "orange"), (20, "red"))))
    responses = ts(
        "HTTP responses by code",
        "Responses per second every http, lb and journey probe got, by status code.",
        query(f"sum by (probe, code) (rate(monitor_http_responses_total{{{S}}}[{RI}]))",
              "{{probe}} {{code}}"),
        unit="reqps")
    reasons = ts(
        "Failure reasons",
        "Failed runs per reason (timeout, dns, connect_refused, connect_timeout, "
        "connection_reset, tls, http_status, assertion, auth, capacity, protocol, error).",
        query(f"sum by (probe, reason) (increase(monitor_probe_failures_total{{{S}}}[{RI}]))"
              " > 0", "{{probe}} {{reason}}"),
        unit="short", stack=True)
    duration = ts(
        "Run duration p95",
        "95th percentile of whole runs per probe.",
        query(f"histogram_quantile(0.95, sum by (vantage, probe, le) "
              f"(rate(monitor_probe_duration_seconds_bucket{{{S}}}[{RI}])))",
              "{{vantage}} {{probe}}"),
        unit="s")
    phases = ts(
        "HTTP phases p95",
        "95th percentile per phase (dns, connect, proxy, tls, ttfb, transfer) of the last-run "
        "phase gauges as scraped: with a probe interval at most the scrape interval, "
        "every run is seen.",
        query(f"max by (probe, phase) (quantile_over_time(0.95, "
              f"monitor_http_phase_duration_seconds{{{S}}}[{RI}]))",
              "{{probe}} {{phase}}"),
        unit="s")
    cert = (panel(stat.Panel, "Certificate days left",
                  "Earliest notAfter in the chain each tls probe was served (ticket below "
                  "14 days, page below 3).",
                  [query(f"probe:monitor_tls_cert_expiry:seconds_left{{{S}}} / 86400",
                         "{{probe}}", instant=True)], unit="d", width=12, height=6)
            .thresholds(thresholds((None, "red"), (3, "orange"), (14, "green"))))
    lb_backends = ts(
        "Load balancer: responses by backend",
        "Responses per second of lb probes by backend (the backend_header value, capped "
        "at max_backends; the rest is `other`) and code.",
        query(f"sum by (probe, backend, code) "
              f"(rate(monitor_lb_backend_responses_total{{{S}}}[{RI}]))",
              "{{probe}} {{backend}} {{code}}"),
        unit="reqps")
    lb_addresses = (panel(statetimeline.Panel, "Load balancer: per address",
                          "1 when every request of the last run to that resolved address "
                          "(by index) succeeded.",
                          [query(f"max by (probe, address) (monitor_lb_address_success{{{S}}})",
                                 "{{probe}} #{{address}}")], width=12, height=8)
                    .mappings(value_map({"0": ("failing", "red"), "1": ("ok", "green")})))
    return board("monitor-overview", "monitor / overview",
                 "Is it up, which layer fails, and with which codes.", [
                     ("Status", [verdict, layers, success]),
                     ("Pages", [failing_layers, run_burn, streak]),
                     ("HTTP errors", [errors_by_code, page_ratio, responses, reasons]),
                     ("Latency", [duration, phases]),
                     ("Edge", [cert, lb_backends, lb_addresses]),
                     (OPTIONAL_ROW, platform_panels()),
                 ])


# Rows whose panels need `attribution:` or Google Cloud metrics through
# Managed Service for Prometheus (docs/correlation.md); elsewhere they stay empty.
OPTIONAL_ROW = "Optional: the platform's own view (Google Cloud)"
OPTIONAL = "Optional (docs/correlation.md): "


def platform_panels() -> list[Builder]:
    """Who produced the failures: Cloud Logging's verdicts and Google's metrics."""
    attribution = ts(
        "Failure attribution",
        OPTIONAL + "failed runs by who produced the failure, from the load balancer's and "
        "Cloud Run's request logs of the run's trace id (attribution:).",
        query(f"sum by (probe, attribution) "
              f"(increase(monitor_http_failure_attribution_total{{{S}}}[{RI}])) > 0",
              "{{probe}} {{attribution}}"),
        unit="short", stack=True)
    run_5xx = ts(
        "Cloud Run 5xx ratio vs ours",
        OPTIONAL + "5xx share of all requests Cloud Run served, per service, next to the 5xx "
        "share of our probes' responses for the same service (probes' service: = the Cloud "
        "Run service name).",
        query("service:run_requests_5xx:ratio_rate5m", "{{service}} Cloud Run"),
        query(f'service:monitor_http_5xx:ratio_rate5m{{{D},service=~"$service"}}',
              "{{service}} probes ({{vantage}})", "B"),
        unit="percentunit")
    instances = ts(
        "Cloud Run instances",
        OPTIONAL + "container instances per service and state (active, idle).",
        query("service:run_container_instances:sum", "{{service}} {{state}}"),
        unit="short", stack=True)
    lb_own = ts(
        "Load balancer's own 5xx",
        OPTIONAL + "5xx the load balancer answered itself: 5xx to clients minus 5xx of "
        "backends, per URL map and backend.",
        query("backend:lb_own_5xx:rate5m", "{{url_map_name}} {{backend_target_name}} own"),
        query("backend:lb_requests_5xx:rate5m",
              "{{url_map_name}} {{backend_target_name}} all 5xx", "B"),
        unit="reqps")
    return [attribution, run_5xx, instances, lb_own]


def capacity() -> Any:
    knee = ts(
        "Burst knee over time",
        "Highest concurrency step that passed in each run (0: none). Below the probe's "
        "min_capacity the run fails with reason capacity.",
        query(f"max by (vantage, probe) (monitor_burst_capacity_concurrency{{{S}}})",
              "{{vantage}} {{probe}}"),
        query(f"max by (vantage, probe) (monitor_burst_ramp_complete{{{S}}})",
              "{{probe}} ramp complete", "B"),
        unit="short")
    outcomes = ts(
        "Burst connections by step and outcome",
        "Connections of burst runs by concurrency step and outcome (ok, slow, failed, timeout).",
        query(f"sum by (probe, step, outcome) "
              f"(increase(monitor_burst_connections_total{{{S}}}[{RI}])) > 0",
              "{{probe}} step {{step}} {{outcome}}"),
        unit="short", stack=True)
    burst_heat = heat(
        "Burst connect time",
        "TCP connect time of burst connections. Bands at ~1, 3 and 7 s are SYN "
        "retransmissions: dropped connection attempts.",
        f"sum by (le) (increase(monitor_burst_connect_duration_seconds_bucket{{{S}}}[{RI}]))")
    sql_heat = heat(
        "SQL connect time",
        "Whole SQL connects (TCP, TLS, startup, auth), in seconds. Compare with "
        "app_timeout in the panel beside.",
        f"sum by (le) (increase(monitor_sql_connect_duration_seconds_bucket{{{S}}}[{RI}]))")
    p99 = ts(
        "SQL connect p99 / app_timeout",
        "p99 of whole connects as a fraction of the application's own connect timeout "
        "(1 = the application gives up); the ticket opens above 0.8 (15m window).",
        query(f"probe:monitor_sql_connect_app_timeout_ratio:p99_rate15m{{{S}}}",
              "{{probe}} p99 (15m)"),
        query(f"histogram_quantile(0.99, sum by (vantage, probe, le) "
              f"(rate(monitor_sql_connect_app_timeout_ratio_bucket{{{S}}}[{RI}])))",
              "{{probe}} p99", "B"),
        query(f"0 * max by (vantage, probe) (monitor_sql_app_timeout_seconds{{{S}}}) + 0.8",
              "{{probe}} ticket line (0.8)", "C"),
        unit="percentunit")
    connections = ts(
        "SQL connections used vs max",
        "Client connections in use on the server and the connections it accepts from "
        "clients (max less reserved slots). The ticket opens above 80 %.",
        query(f"max by (vantage, probe) (monitor_sql_connections_used{{{S}}})",
              "{{probe}} used"),
        query(f"max by (vantage, probe) (monitor_sql_connections_max{{{S}}})",
              "{{probe}} max", "B"),
        unit="short")
    sql_phases = ts(
        "SQL phase breakdown (mean)",
        "Mean time per phase of SQL runs: connect (TCP: the egress path), tls, startup "
        "(auth, backend start), query.",
        query(f"sum by (probe, phase) (rate(monitor_sql_phase_duration_seconds_sum{{{S}}}[{RI}]))"
              f"\n/\nsum by (probe, phase) "
              f"(rate(monitor_sql_phase_duration_seconds_count{{{S}}}[{RI}]))",
              "{{probe}} {{phase}}"),
        unit="s", stack=True)
    load_rate = ts(
        "Load tests: requests by code",
        "Requests per second of the daemon's own load tests (kind: load), by status code.",
        query(f"sum by (probe, code) (rate(monitor_load_requests_total{{{S}}}[{RI}]))",
              "{{probe}} {{code}}"),
        query(f"max by (probe) (monitor_load_active{{{S}}})", "{{probe}} active", "B"),
        unit="reqps")
    load_latency = ts(
        "Load tests: latency p50 / p99",
        "Latency from each request's intended send time (open loop: no coordinated omission).",
        query(f"histogram_quantile(0.5, sum by (probe, le) "
              f"(rate(monitor_load_latency_seconds_bucket{{{S}}}[{RI}])))", "{{probe}} p50"),
        query(f"histogram_quantile(0.99, sum by (probe, le) "
              f"(rate(monitor_load_latency_seconds_bucket{{{S}}}[{RI}])))", "{{probe}} p99", "B"),
        unit="s")
    return board("monitor-capacity", "monitor / capacity",
                 "How much the egress path and the database carry, and how close they are "
                 "to the limits that kill new instances.", [
                     ("Egress (burst)", [knee, outcomes, burst_heat]),
                     ("Database (sql)", [sql_heat, p99, connections, sql_phases]),
                     ("Load tests", [load_rate, load_latency]),
                     (OPTIONAL_ROW, platform_capacity_panels()),
                 ])


def platform_capacity_panels() -> list[Builder]:
    """The connector and Cloud SQL as Google measures them, next to our probes."""
    connector = ts(
        "VPC connector instances vs max",
        OPTIONAL + "instances of each Serverless VPC Access connector against its "
        "max-instances (a constant in correlation.yml); at max it cannot scale out.",
        query("connector:vpcaccess_instances:max", "{{connector_name}} instances"),
        query("connector:vpcaccess_max_instances:config", "{{connector_name}} max", "B"),
        unit="short")
    cpu = ts(
        "VPC connector CPU p90 and egress probes p90",
        OPTIONAL + "p90 CPU utilization over the connector's instances, and the egress "
        "probes' p90 duration (15m) against their 6h baseline: the ticket "
        "MonitorConnectorAtMaxEgressSlow reads both.",
        query("connector:vpcaccess_cpu_utilization:p90", "{{connector_name}} CPU p90"),
        query(f"probe:monitor_probe_duration_seconds:p90_rate15m{{{S}}}"
              f"\n* on (job, vantage, probe) group_left ()\n"
              f'max by (job, vantage, probe) (monitor_probe_info{{{D},layer="egress"}})',
              "{{probe}} p90 (15m)", "B"),
        query(f"probe:monitor_probe_duration_seconds:p90_baseline6h{{{S}}}"
              f"\n* on (job, vantage, probe) group_left ()\n"
              f'max by (job, vantage, probe) (monitor_probe_info{{{D},layer="egress"}})',
              "{{probe}} p90 baseline (6h)", "C"),
        unit="short")
    sql = ts(
        "Cloud SQL connections vs ours",
        OPTIONAL + "connections Cloud SQL counts (PostgreSQL num_backends, MySQL network "
        "connections) next to what the sql probes read from the server: used and max.",
        query("database:cloudsql_connections:sum", "{{database_id}} Cloud SQL"),
        query(f"max by (vantage, probe) (monitor_sql_connections_used{{{S}}})",
              "{{probe}} used", "B"),
        query(f"max by (vantage, probe) (monitor_sql_connections_max{{{S}}})",
              "{{probe}} max", "C"),
        unit="short")
    return [connector, cpu, sql]


def heat(title: str, description: str, expr: str) -> Builder:
    return panel(heatmap.Panel, title, description,
                 [query(expr, "{{le}}", fmt=PromQueryFormat.HEATMAP)], unit="s")


def golden_path() -> Any:
    j = f'{S},kind="journey"'
    ratio_ = ts(
        "Journey success ratio",
        "Share of successful journey runs; the page needs 3 failed runs and 25 % of 5m.",
        query(ratio(f"rate(monitor_probe_runs_total{{{j},result=\"success\"}}[{RI}])",
                    f"rate(monitor_probe_runs_total{{{j}}}[{RI}])", "vantage, probe"),
              "{{vantage}} {{probe}}"),
        unit="percentunit")
    steps = (panel(statetimeline.Panel, "Step success (last run)",
                   "1 when the step succeeded in the journey's last run.",
                   [query(f"max by (probe, step) (monitor_journey_step_success{{{S}}})",
                          "{{probe}} {{step}}")], width=12, height=8)
             .mappings(value_map({"0": ("failing", "red"), "1": ("ok", "green")})))
    step_duration = ts(
        "Step duration p95",
        "95th percentile duration of each journey step.",
        query(f"histogram_quantile(0.95, sum by (probe, step, le) "
              f"(rate(monitor_journey_step_duration_seconds_bucket{{{S}}}[{RI}])))",
              "{{probe}} {{step}}"),
        unit="s")
    step_mean = ts(
        "Step duration (mean, stacked)",
        "Mean duration per step, stacked: where a journey spends its time.",
        query(f"sum by (probe, step) (rate(monitor_journey_step_duration_seconds_sum{{{S}}}[{RI}]))"
              f"\n/\nsum by (probe, step) "
              f"(rate(monitor_journey_step_duration_seconds_count{{{S}}}[{RI}]))",
              "{{probe}} {{step}}"),
        unit="s", stack=True)
    reasons = ts(
        "Journey failures by reason",
        "Failed journey runs per reason.",
        query(f"sum by (probe, reason) (increase(monitor_probe_failures_total{{{j}}}[{RI}])) > 0",
              "{{probe}} {{reason}}"),
        unit="short", stack=True)
    codes = ts(
        "Journey HTTP responses by code",
        "Responses the journeys' HTTP steps got, per second, by code.",
        query(f"sum by (probe, code) (rate(monitor_http_responses_total{{{j}}}[{RI}]))",
              "{{probe}} {{code}}"),
        unit="reqps")
    return board("monitor-golden-path", "monitor / golden path",
                 "The user journey: login, connect, ask, answer.", [
                     ("Journey", [ratio_, steps, step_duration, step_mean, reasons, codes]),
                 ])


def daemon() -> Any:
    sched = ts(
        "Scheduler lag p99",
        "Delay between a run's scheduled time and its start.",
        query(f"histogram_quantile(0.99, sum by (vantage, le) "
              f"(rate(monitor_scheduler_lag_seconds_bucket{{{D}}}[{RI}])))", "{{vantage}}"),
        unit="s")
    loop = ts(
        "Event-loop lag p99",
        "How late the event loop wakes a timer: all probing shares one loop.",
        query(f"histogram_quantile(0.99, sum by (vantage, le) "
              f"(rate(monitor_event_loop_lag_seconds_bucket{{{D}}}[{RI}])))", "{{vantage}}"),
        unit="s")
    runs = ts(
        "Runs by result",
        "Probe runs per second, by result.",
        query(f"sum by (vantage, result) (rate(monitor_probe_runs_total{{{S}}}[{RI}]))",
              "{{vantage}} {{result}}"),
        unit="ops", stack=True)
    skipped = ts(
        "Skipped runs",
        "Runs not started because the previous one still ran or the run was missed.",
        query(f"sum by (vantage, probe) (increase(monitor_probe_skipped_total{{{S}}}[{RI}]))",
              "{{vantage}} {{probe}}"),
        unit="short")
    since = ts(
        "Time since last run / stale limit",
        "Seconds since each probe's last finished run; MonitorProbesStale pages above "
        "3 intervals + 1m.",
        query(f"time() - max by (vantage, probe) "
              f"(monitor_probe_last_run_timestamp_seconds{{{S}}})", "{{probe}}"),
        query(f"3 * max by (vantage, probe) (monitor_probe_interval_seconds{{{S}}}) + 60",
              "{{probe}} limit", "B"),
        unit="s")
    reload_ = (panel(stat.Panel, "Config reload",
                     "1 if the last config load succeeded; and when the config was last "
                     "loaded successfully.",
                     [query(f"min by (vantage) (monitor_config_last_reload_success{{{D}}})",
                            "{{vantage}} ok", instant=True),
                      query(f"time() - max by (vantage) "
                            f"(monitor_config_last_reload_timestamp_seconds{{{D}}})",
                            "{{vantage}} age", "B", instant=True)],
                     width=8, height=6)
               .override_by_regexp(".* age", [
                   model.DynamicConfigValue(id_val="unit", value="s")]))
    build = (panel(table.Panel, "Daemons",
                   "Running versions by vantage and instance.",
                   [query(f"max by (vantage, instance, version) (monitor_build_info{{{D}}})",
                          fmt=PromQueryFormat.TABLE, instant=True)], width=8, height=6))
    probes = (panel(table.Panel, "Probes",
                    "Every configured probe with its join dimensions and interval.",
                    [query(f"max by (vantage, probe, kind, level, layer, service, target) "
                           f"(monitor_probe_info{{{S}}})", fmt=PromQueryFormat.TABLE,
                           instant=True),
                     query(f"max by (vantage, probe) (monitor_probe_interval_seconds{{{S}}})",
                           ref="B", fmt=PromQueryFormat.TABLE, instant=True)],
                    width=8, height=6))
    return board("monitor-daemon", "monitor / daemon",
                 "The daemon itself: lag, runs, skips, reloads.", [
                     ("Scheduling", [sched, loop, runs, skipped, since]),
                     ("Config and build", [reload_, build, probes]),
                 ])


DASHBOARDS: dict[str, Callable[[], Any]] = {
    "overview": overview,
    "capacity": capacity,
    "golden-path": golden_path,
    "daemon": daemon,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a committed dashboard differs from the output")
    args = parser.parse_args(argv)
    stale = []
    for name in DASHBOARDS:
        path = OUT / f"{name}.json"
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python grafana/generate.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
