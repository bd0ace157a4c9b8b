"""Time to page, and what never pages, at the reference settings.

Probe interval 10 s (jitter 0.1), timeout 5 s, objective 0.99; scrape and
rule evaluation every 15 s; Alertmanager's page route: group_wait 10 s,
group_interval 15 s. Each case runs 30 copies of a probe with different run
phases, scrape offsets and fault times through the shipped rules, evaluated
by promtool (tests.support.rulesim); the times are simulated, not measured,
so the bounds are exact for the model: they are the contract of
docs/alerting.md.
"""

from __future__ import annotations

import shutil
import statistics

import pytest

from tests.support.rulesim import (
    ProbeModel,
    ProbeSeen,
    alternating,
    always,
    scenario,
    share,
)

pytestmark = [pytest.mark.external,
              pytest.mark.skipif(shutil.which("promtool") is None,
                                 reason="needs promtool (apt-get install prometheus)")]

HTTP = ProbeModel(name="api", layer="service")
SQL = ProbeModel(name="db", kind="sql", layer="database")
LB = ProbeModel(name="edge", kind="lb", layer="edge", requests=10)


def times_to_page(seen: list[ProbeSeen]) -> list[float]:
    times = [s.time_to_page for s in seen]
    assert all(t is not None for t in times), "a copy never paged"
    return sorted(t for t in times if t is not None)


@pytest.mark.parametrize(("probe", "answer"), [
    pytest.param(HTTP, "5xx", id="http-503"),
    pytest.param(HTTP, "hang", id="http-hang"),
    pytest.param(SQL, "hang", id="database-path-hang"),
    pytest.param(SQL, "refused", id="database-refused"),
    pytest.param(LB, "5xx", id="lb-503"),
    pytest.param(LB, "hang", id="lb-hang"),
])
def test_a_full_outage_pages_within_a_minute_and_resolves_within_two(
        probe: ProbeModel, answer: str) -> None:
    """Every run failing (or every response 5xx): paged within 60 s median and
    75 s at worst, once, and resolved within 2 minutes of recovery."""
    seen = scenario(probe, always(answer), duration=420, recover_after=180)
    times = times_to_page(seen)
    assert statistics.median(times) <= 60
    assert times[-1] <= 75
    assert all(len(s.pages) == 1 for s in seen)
    resolved = [s.time_to_resolve for s in seen]
    assert all(r is not None and r <= 120 for r in resolved), resolved


def test_half_the_responses_failing_pages_within_two_minutes() -> None:
    """50 % of an lb probe's responses 5xx: paged within 2 minutes, once."""
    seen = scenario(LB, share("5xx", 0.5), duration=360)
    assert times_to_page(seen)[-1] <= 120
    assert all(len(s.pages) == 1 for s in seen)


def test_a_tenth_of_the_responses_failing_pages_within_fifteen_minutes() -> None:
    """10 % of an lb probe's responses 5xx (10x the budget): within 15 minutes, once."""
    seen = scenario(LB, share("5xx", 0.1), duration=1080)
    assert times_to_page(seen)[-1] <= 900
    assert all(len(s.pages) == 1 for s in seen)


def test_half_the_runs_of_a_single_request_probe_failing_pages() -> None:
    """An http probe (one request a run) with 50 % 503s pages, once; its few
    samples a minute make it slower than an lb probe (docs/alerting.md)."""
    seen = scenario(HTTP, share("5xx", 0.5), duration=480)
    times = times_to_page(seen)
    assert statistics.median(times) <= 120
    assert all(len(s.pages) == 1 for s in seen)


@pytest.mark.parametrize("probe", [HTTP, SQL], ids=["http", "sql"])
def test_a_flapping_probe_pages_once(probe: ProbeModel) -> None:
    """Runs that alternate between failing and passing page once and stay one
    incident: no resolved-then-firing again while it flaps."""
    seen = scenario(probe, alternating("hang"), duration=900)
    times_to_page(seen)
    for s in seen:
        assert len(s.pages) == 1
        assert s.pager is not None and not s.pager.resolved


@pytest.mark.parametrize(("probe", "answer"), [
    pytest.param(HTTP, "5xx", id="http"),
    pytest.param(SQL, "hang", id="sql"),
    pytest.param(LB, "5xx", id="lb-all-ten-503"),
])
def test_one_failed_run_never_pages(probe: ProbeModel, answer: str) -> None:
    """A single failed run (for lb: ten 503s in one run) pages nothing."""
    seen = scenario(probe, always(answer), duration=600, recover_after=probe.interval / 2)
    assert all(not s.pages for s in seen)


@pytest.mark.parametrize("probe", [HTTP, SQL, LB], ids=["http", "sql", "lb"])
def test_one_percent_noise_for_hours_never_pages(probe: ProbeModel) -> None:
    """Independent failures of 1 % of runs (lb: of responses) for 3 hours page
    nothing (bench/false_pages.py runs 30 days)."""
    answer = "hang" if probe.kind == "sql" else "5xx"
    seen = scenario(probe, share(answer, 0.01), duration=3 * 3600, alignments=4)
    assert all(not s.pages for s in seen)
