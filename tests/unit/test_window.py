"""monitor/window.py: the incremental verdict window equals a full rescan of the runs."""

from __future__ import annotations

import random

import pytest

from monitor.verdict import ProbeStats, judge_window, levels, verdict
from monitor.window import RunWindow, VerdictWindow


def rescan(runs: list[tuple[float, bool]], since: float, capacity: int) -> tuple[int, int]:
    """What the recorder did before: the last `capacity` runs, those started since."""
    recent = [ok for t, ok in runs[-capacity:] if t >= since]
    return len(recent), sum(1 for ok in recent if not ok)


@pytest.mark.parametrize("seed", range(20))
def test_counts_equal_a_full_rescan_on_random_runs(seed: int) -> None:
    """After every run and every clock step, runs and failures per probe, each
    probe's judgement and the verdict equal those of a rescan of all runs."""
    rng = random.Random(seed)
    window_seconds = rng.choice([5.0, 30.0, 120.0])
    names = [f"p{i}" for i in range(rng.randint(1, 12))]
    config = {n: (rng.randint(1, 4), rng.choice([0.0, 0.05, 0.3]), rng.randint(3, 40),
                  rng.uniform(0.0, 0.9)) for n in names}  # level, allowed, capacity, p(fail)
    window = VerdictWindow(window_seconds)
    for name, (level, allowed, capacity, _) in config.items():
        window.add(name, level, allowed, capacity)
    history: dict[str, list[tuple[float, bool]]] = {n: [] for n in names}
    now = 1000.0
    for _ in range(600):
        now += rng.expovariate(2.0)
        name = rng.choice(names)
        if rng.random() < 0.8:  # a run of `name` started a moment ago
            started = max(now - rng.uniform(0, 1), history[name][-1][0] if history[name] else 0)
            ok = rng.random() >= config[name][3]
            history[name].append((started, ok))
            window.append(name, started, ok)
        window.expire(now)
        judged = []
        for n in names:
            level, allowed, capacity, _ = config[n]
            runs, failures = rescan(history[n], now - window_seconds, capacity)
            stats = window.stats(n)
            assert (stats.runs, stats.failures) == (runs, failures)
            expected = ProbeStats(n, level, runs, failures, allowed)
            assert window.judgement(n) == judge_window(expected)
            judged.append((expected, judge_window(expected)))
        full = levels(judged)
        assert window.verdict() == verdict(full)
        assert [(s.level, s.judgement, set(s.probes), set(s.failing))
                for s in window.level_states()] == [
            (s.level, s.judgement, set(s.probes), set(s.failing)) for s in full]


def test_a_removed_probe_leaves_the_verdict_and_its_name_can_return() -> None:
    """remove() drops a failing probe from its level; re-adding the name starts empty."""
    window = VerdictWindow(60)
    window.add("a", 1, 0.0, 10)
    for t in range(5):
        window.append("a", 100.0 + t, False)
    assert window.verdict() == "broken"
    window.remove("a")
    assert window.verdict() == "operational"
    window.add("a", 1, 0.0, 10)
    window.expire(1000.0)  # the old heap entry of "a" must not touch the new window
    assert window.stats("a").runs == 0
    window.append("a", 1000.0, True)
    assert window.stats("a").runs == 1


def test_ring_keeps_the_newest_runs_when_full() -> None:
    """A full ring drops its oldest run and its failure from the counts."""
    ring = RunWindow(3)
    for t, ok in [(1, False), (2, True), (3, True), (4, True)]:
        ring.append(t, ok)
    assert (ring.runs, ring.failures) == (3, 0)
    assert list(ring.items()) == [(2, True), (3, True), (4, True)]
    assert ring.expire(3.5) and list(ring.items()) == [(4, True)]
