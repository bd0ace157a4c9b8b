"""The shipped alert rules and Alertmanager config (config/prometheus/).

promtool and amtool check them and run the rule unit tests; the rest are
static checks of the contract: labels and annotations of every alert, the
metrics the rules read, grouping, test coverage of every alert, and the
short-window substitution the end-to-end test uses.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.metricspecs import sample_names
from tests.support.external import needs

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "config" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))

needs_promtool = needs("promtool", install="apt-get install prometheus")
needs_amtool = needs("amtool", install="apt-get install prometheus-alertmanager")


def seconds(duration: str) -> float:
    number, unit = float(duration[:-1]), duration[-1]
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=PROM)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def all_rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in load(path)["groups"]
            for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in all_rules() if "alert" in rule]


def defined_metrics() -> set[str]:
    return sample_names()


def recorded() -> set[str]:
    return {rule["record"] for rule in all_rules() if "record" in rule}


METRIC = re.compile(r"\bmonitor_[a-z0-9_]+\b")
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


# -- the tools ----------------------------------------------------------------
@needs_promtool
def test_promtool_check_rules_is_clean() -> None:
    """`promtool check rules` accepts every rule file without a warning."""
    result = run("promtool", "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(test_file: Path) -> None:
    """Every promtool rule test file passes."""
    result = run("promtool", "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_config_accepts_the_scrape_example() -> None:
    """The example prometheus.yml (scrape job, file_sd, rule files) is valid."""
    result = run("promtool", "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


@needs_amtool
def test_amtool_check_config_accepts_the_alertmanager_example() -> None:
    """The example alertmanager.yml is valid and has its inhibitions."""
    result = run("amtool", "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 inhibit rules" in result.stdout


ROUTES = [
    pytest.param({"alertname": "MonitorHTTPErrorRatioHigh", "severity": "page",
                  "family": "http_errors", "vantage": "v1", "probe": "api"}, "pager",
                 id="page-to-pager"),
    pytest.param({"alertname": "MonitorDaemonAbsent", "severity": "page", "family": "daemon"},
                 "pager", id="page-without-probe-to-pager"),
    pytest.param({"alertname": "MonitorTLSCertExpiringSoon", "severity": "ticket",
                  "family": "tls_expiry", "vantage": "v1", "probe": "cert"}, "tickets",
                 id="ticket-to-tickets"),
    pytest.param({"alertname": "Unknown"}, "tickets", id="no-severity-to-tickets"),
]


@needs_amtool
@pytest.mark.parametrize(("labels", "receiver"), ROUTES)
def test_alertmanager_routes_by_severity(labels: dict[str, str], receiver: str) -> None:
    """`amtool config routes test` sends pages to the pager, the rest to tickets."""
    result = run("amtool", "config", "routes", "test", "--config.file=alertmanager.yml",
                 f"--verify.receivers={receiver}",
                 *(f"{key}={value}" for key, value in labels.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


# -- the contract of every alert -------------------------------------------
@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_has_severity_family_annotations_and_runbook(rule: dict[str, Any]) -> None:
    """Every alert: severity page|ticket, a family, summary, description, runbook."""
    assert rule["labels"]["severity"] in ("page", "ticket")
    assert rule["labels"]["family"]
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert annotations["runbook_url"] == f"docs/runbooks/{rule['alert']}.md"
    assert (ROOT / annotations["runbook_url"]).is_file()


def test_the_verdict_never_pages() -> None:
    """The verdict summarises causes that page on their own: it is a ticket."""
    verdict = [r for r in alerts() if "monitor_verdict" in r["expr"]]
    assert verdict
    assert all(r["labels"]["severity"] == "ticket" for r in verdict)


def test_tls_expiry_has_a_ticket_and_a_page_in_one_family() -> None:
    """14 days opens a ticket, 3 days pages; one family so the page inhibits the ticket."""
    tls = {r["labels"]["severity"]: r for r in alerts() if r["labels"]["family"] == "tls_expiry"}
    assert "14 * 86400" in tls["ticket"]["expr"]
    assert "3 * 86400" in tls["page"]["expr"]


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.get("alert") or r["record"])
def test_rules_read_only_defined_metrics(rule: dict[str, Any]) -> None:
    """Expressions and annotation queries use metricspecs.py names or recorded series."""
    text = rule["expr"] + " ".join(rule.get("annotations", {}).values())
    unknown = set(RECORDED.findall(text)) - recorded()
    unknown |= set(METRIC.findall(RECORDED.sub(" ", text))) - defined_metrics()
    assert not unknown


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.get("alert") or r["record"])
def test_rules_never_aggregate_by_instance(rule: dict[str, Any]) -> None:
    """Series are kept by (job, vantage, probe), never by instance (it changes on restart)."""
    clauses = re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"])
    assert all("instance" not in clause for clause in clauses)
    if "alert" in rule and "probe" in rule["expr"]:
        # an alert about probes is grouped by probe (and keeps no instance
        # label), in its own clauses or in the probe-level series it reads
        assert any("probe" in clause for clause in clauses) or re.search(
            r"\bprobe(_\w+)?:monitor_", rule["expr"])


# Pages about a probe, and the load-test suppression each one uses.
PROBE_PAGES = {
    "MonitorProbeDown": "service:monitor_load_active:max5m",
    "MonitorProbeFailing": "service:monitor_load_active:max35m",
    "MonitorHTTPErrorRatioHigh": "service:monitor_load_active:max35m",
}


def test_every_page_about_a_probe_is_listed() -> None:
    """A new probe page must say how our own load tests are kept out of it."""
    pages = {r["alert"] for r in alerts() if r["labels"]["severity"] == "page"
             and "probe" in r["expr"] and "monitor_tls" not in r["expr"]
             and "monitor_probe_last_run" not in r["expr"]}
    assert pages == set(PROBE_PAGES)


@pytest.mark.parametrize(("name", "suppression"), PROBE_PAGES.items())
def test_probe_pages_are_suppressed_during_own_load(name: str, suppression: str) -> None:
    """Probe pages drop services with an own load test in the look-back."""
    rule = next(r for r in alerts() if r["alert"] == name)
    assert f"unless on (service) {suppression}" in rule["expr"]


def _windows_read(expr: str, seen: frozenset[str] = frozenset()) -> set[float]:
    """Every range an expression reads, through the recorded series it uses."""
    windows = {seconds(w) for w in re.findall(r"\[(\d+[smhd])\]", expr)}
    for rule in all_rules():
        name = rule.get("record")
        if name and name not in seen and re.search(rf"\b{re.escape(name)}\b", expr) \
                and not name.startswith("service:monitor_load_active"):
            windows |= _windows_read(rule["expr"], seen | {name})
    return windows


@pytest.mark.parametrize(("name", "suppression"), PROBE_PAGES.items())
def test_load_lookback_outlasts_every_window_the_page_reads(name: str, suppression: str) -> None:
    """Errors a load test leaves in any window a page reads (its recorded
    series included) are gone before the suppression ends."""
    load = next(r for r in all_rules() if r.get("record") == suppression)
    (lookback,) = re.findall(r"\[(\d+[smhd])\]", load["expr"])
    rule = next(r for r in alerts() if r["alert"] == name)
    longest = max(_windows_read(rule["expr"]))
    assert seconds(lookback) > longest + seconds(rule.get("for", "0s"))


def _constants(path: Path, stream: str) -> list[str]:
    """The numbers of a stream's burn-rate rules, in order (without the
    responses' own two-run guard)."""
    text = "\n".join(r["expr"] for g in load(path)["groups"] for r in g["rules"]
                     if r.get("record", "").startswith(stream)
                     and r["record"].split(":")[-1] in ("burning", "hold_seconds", "gap_seconds"))
    text = re.sub(r"and on \(job, vantage, probe\)\s+changes\([^)]*\[\w+\]\) > 1", "", text)
    return re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", text)


def test_failed_run_and_response_rules_burn_alike() -> None:
    """The failed-run (probes.yml) and 5xx (http.yml) rules share every
    window, burn rate, guard and hold; only the responses' two-run guard
    (changes() > 1) is theirs alone."""
    runs = _constants(PROM / "rules" / "probes.yml", "probe:monitor_probe_failed_runs")
    responses = _constants(PROM / "rules" / "http.yml", "probe:monitor_http_errors")
    assert runs
    assert responses == runs


def _test_expectations() -> dict[str, set[str]]:
    """alertname -> {"fires", "silent"} over all promtool test files."""
    seen: dict[str, set[str]] = {}
    for path in TEST_FILES:
        for group in load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "silent"
                seen.setdefault(case["alertname"], set()).add(kind)
    return seen


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_every_alert_is_tested_firing_and_silent(rule: dict[str, Any]) -> None:
    """Each alert has a promtool case where it fires and one where it must not."""
    assert _test_expectations().get(rule["alert"]) == {"fires", "silent"}
