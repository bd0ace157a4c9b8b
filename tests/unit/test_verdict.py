"""monitor/verdict.py: Wilson bounds, judgements, levels and the verdict."""

from __future__ import annotations

import pytest

from monitor.verdict import (
    LevelState,
    ProbeStats,
    judge,
    judge_window,
    levels,
    samples_needed,
    verdict,
    wilson,
)


def stats(runs: int, failures: int, level: int = 1, allowed: float = 0.05) -> ProbeStats:
    return ProbeStats(name=f"p{level}-{runs}-{failures}", level=level, runs=runs,
                      failures=failures, allowed_failure_ratio=allowed)


def test_zero_failures_needs_73_runs_for_five_percent() -> None:
    """docs/architecture.md: 0 failures in n runs shows a rate below 5 % only from n = 73."""
    assert wilson(0, 72)[1] > 0.05
    assert wilson(0, 73)[1] <= 0.05
    assert samples_needed(stats(10, 0)) == 73


def test_wilson_matches_known_values() -> None:
    """The interval for 10 failures in 100 runs is the textbook [0.055, 0.174]."""
    low, high = wilson(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-3)
    assert high == pytest.approx(0.1744, abs=1e-3)


@pytest.mark.parametrize(
    ("runs", "failures", "expected"),
    [
        pytest.param(73, 0, "pass", id="73-clean-runs-pass"),
        pytest.param(20, 0, "inconclusive", id="20-clean-runs-cannot-decide"),
        pytest.param(20, 19, "fail", id="mostly-failing-fails"),
        pytest.param(20, 1, "inconclusive", id="one-failure-in-20-undecided"),
        pytest.param(0, 0, "inconclusive", id="no-runs"),
    ],
)
def test_judge_with_duration(runs: int, failures: int, expected: str) -> None:
    """A probe passes, fails or is inconclusive by its Wilson bounds."""
    assert judge(stats(runs, failures)) == expected


def test_smoke_judgement_is_all_or_nothing() -> None:
    """Without --duration one failure fails and one success passes."""
    assert judge(stats(1, 0), smoke=True) == "pass"
    assert judge(stats(1, 1), smoke=True) == "fail"


def test_daemon_window_ignores_a_stray_failure_but_not_a_dead_probe() -> None:
    """One failure in 30 runs keeps the level; a dead probe fails it within a few runs."""
    assert judge_window(stats(30, 1)) == "pass"
    assert judge_window(stats(3, 3)) == "fail"
    assert judge_window(stats(0, 0)) == "pass"


def test_samples_needed_none_when_rate_equals_target() -> None:
    """At exactly the allowed rate no number of runs decides."""
    assert samples_needed(stats(20, 1, allowed=0.05)) is None


@pytest.mark.parametrize(
    ("judgements", "expected"),
    [
        pytest.param({1: "pass", 2: "pass", 4: "pass"}, "operational", id="all-pass"),
        pytest.param({1: "pass", 4: "fail"}, "partial", id="load-fails"),
        pytest.param({1: "pass", 3: "fail", 4: "pass"}, "broken", id="level3-fails"),
        pytest.param({1: "inconclusive", 2: "pass"}, "inconclusive", id="undecided"),
        pytest.param({1: "inconclusive", 2: "fail"}, "broken", id="broken-beats-undecided"),
    ],
)
def test_verdict(judgements: dict[int, str], expected: str) -> None:
    """Levels combine into operational, partial, broken or inconclusive."""
    states = [LevelState(level, j, ("p",), ()) for level, j in judgements.items()]  # type: ignore[arg-type]
    assert verdict(states) == expected


def test_levels_group_probes_and_name_the_failing_ones() -> None:
    """A level fails when any probe fails and lists which."""
    a, b = stats(5, 0, level=1), stats(5, 5, level=1)
    (level,) = levels([(a, "pass"), (b, "fail")])
    assert level.judgement == "fail"
    assert level.failing == (b.name,)
