"""Levels, success ratios and Wilson bounds: pass, fail or not enough data.

A probe's failure rate is judged against its ``allowed_failure_ratio`` with
the 95 % Wilson score interval: it passes when the upper bound is at most the
allowed ratio, fails when the lower bound is above it, and is otherwise
inconclusive. With 0 failures in n runs the upper bound is z²/(n+z²), so a
5 % target is shown only from n = 73.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Z95 = 1.959963984540054
# Level 4 (load) failing makes the system `partial`, never `broken`.
LOAD_LEVEL = 4
# The search for the samples a decision needs stops here.
MAX_SAMPLES_NEEDED = 100_000

Judgement = Literal["pass", "fail", "inconclusive"]
State = Literal["operational", "partial", "broken", "inconclusive"]


def wilson(failures: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of the failure rate; (0, 1) without runs."""
    if runs <= 0:
        return 0.0, 1.0
    p = failures / runs
    z2 = z * z
    centre = p + z2 / (2 * runs)
    margin = z * math.sqrt(p * (1 - p) / runs + z2 / (4 * runs * runs))
    denominator = 1 + z2 / runs
    return max(0.0, (centre - margin) / denominator), min(1.0, (centre + margin) / denominator)


@dataclass(frozen=True)
class ProbeStats:
    name: str
    level: int
    runs: int
    failures: int
    allowed_failure_ratio: float

    @property
    def successes(self) -> int:
        return self.runs - self.failures

    @property
    def success_ratio(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    def success_interval(self) -> tuple[float, float]:
        """Wilson interval of the success ratio."""
        low, high = wilson(self.failures, self.runs)
        return 1 - high, 1 - low


def judge(stats: ProbeStats, *, smoke: bool = False) -> Judgement:
    """``smoke``: a single pass where any failure fails (check without --duration)."""
    if stats.runs == 0:
        return "inconclusive"
    if smoke:
        return "pass" if stats.failures == 0 else "fail"
    low, high = wilson(stats.failures, stats.runs)
    if low > stats.allowed_failure_ratio:
        return "fail"
    if high <= stats.allowed_failure_ratio:
        return "pass"
    return "inconclusive"


def judge_window(stats: ProbeStats) -> Judgement:
    """The daemon's rule: fail only when confidently failing, else pass."""
    if stats.runs == 0:
        return "pass"
    low, _ = wilson(stats.failures, stats.runs)
    return "fail" if low > stats.allowed_failure_ratio else "pass"


def samples_needed(stats: ProbeStats) -> int | None:
    """Runs in total a decision would need if the observed rate held; None if never."""
    rate = stats.failures / stats.runs if stats.runs else 0.0
    for runs in range(max(stats.runs, 1), MAX_SAMPLES_NEEDED + 1):
        failures = round(rate * runs)
        low, high = wilson(failures, runs)
        if low > stats.allowed_failure_ratio or high <= stats.allowed_failure_ratio:
            return runs
    return None


@dataclass(frozen=True)
class LevelState:
    level: int
    judgement: Judgement
    probes: tuple[str, ...]
    failing: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """The JSON of `check --format json` and /api/status."""
        return {"level": self.level, "state": self.judgement, "probes": list(self.probes),
                "failing": list(self.failing)}


def levels(judged: Iterable[tuple[ProbeStats, Judgement]]) -> list[LevelState]:
    by_level: dict[int, list[tuple[ProbeStats, Judgement]]] = {}
    for stats, judgement in judged:
        by_level.setdefault(stats.level, []).append((stats, judgement))
    states = []
    for level in sorted(by_level):
        items = by_level[level]
        judgements = {j for _, j in items}
        overall: Judgement = (
            "fail" if "fail" in judgements
            else "inconclusive" if "inconclusive" in judgements
            else "pass"
        )
        states.append(LevelState(
            level=level,
            judgement=overall,
            probes=tuple(s.name for s, _ in items),
            failing=tuple(s.name for s, j in items if j == "fail"),
        ))
    return states


def verdict(level_states: Iterable[LevelState]) -> State:
    """operational | partial (only level 4 fails) | broken | inconclusive."""
    states = list(level_states)
    if any(s.judgement == "fail" and s.level < LOAD_LEVEL for s in states):
        return "broken"
    if any(s.judgement == "inconclusive" for s in states):
        return "inconclusive"
    if any(s.judgement == "fail" for s in states):
        return "partial"
    return "operational"
