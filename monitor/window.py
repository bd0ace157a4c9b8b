"""The daemon's verdict window, kept incrementally: O(1) per run, not O(probes x window).

Each probe keeps the start time and outcome of the runs inside the verdict
window in a compact ring (8 bytes of time and 1 of outcome per run: 1000
probes at 1 s over 15 minutes take 8 MiB, where result objects took
hundreds), with running counts of runs and failures. A run enters on
record; runs leave when they age out of the window or when the ring is full.

Ageing is driven by a heap holding each probe's oldest run time (one entry
per probe, pushed again when that changes), so a verdict update touches only
the probes whose window changed. Judgements (``judge_window``) are kept per
probe and the failing probes per level, so the verdict itself is O(levels).

Runs of one probe never overlap, so they enter in order of their start
time; the window of a probe is then exactly its last runs started at or
after ``now - window`` (at most ``capacity`` of them), which is what a full
rescan computes (tests/unit/test_window.py compares both on random runs).
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from monitor.verdict import Judgement, LevelState, ProbeStats, State, judge_window, verdict


class RunWindow:
    """One probe's runs inside the window: a ring of (start time, ok) with counts."""

    __slots__ = ("_head", "_oks", "_times", "capacity", "failures", "runs")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._times = array("d", bytes(8 * capacity))
        self._oks = bytearray(capacity)
        self._head = 0  # index of the oldest run kept
        self.runs = 0
        self.failures = 0

    def oldest(self) -> float | None:
        return self._times[self._head] if self.runs else None

    def append(self, started_at: float, ok: bool) -> None:
        if self.runs == self.capacity:
            self._drop_oldest()
        slot = (self._head + self.runs) % self.capacity
        self._times[slot] = started_at
        self._oks[slot] = ok
        self.runs += 1
        self.failures += not ok

    def expire(self, since: float) -> bool:
        """Drop runs started before ``since``; True if any was dropped."""
        dropped = False
        while self.runs and self._times[self._head] < since:
            self._drop_oldest()
            dropped = True
        return dropped

    def items(self) -> Iterator[tuple[float, bool]]:
        for i in range(self.runs):
            slot = (self._head + i) % self.capacity
            yield self._times[slot], bool(self._oks[slot])

    def _drop_oldest(self) -> None:
        self.failures -= not self._oks[self._head]
        self._head = (self._head + 1) % self.capacity
        self.runs -= 1


@dataclass
class _Probe:
    name: str
    level: int
    allowed_failure_ratio: float
    window: RunWindow
    judgement: Judgement = "pass"

    def stats(self) -> ProbeStats:
        return ProbeStats(name=self.name, level=self.level, runs=self.window.runs,
                          failures=self.window.failures,
                          allowed_failure_ratio=self.allowed_failure_ratio)


@dataclass
class _Level:
    probes: dict[str, None] = field(default_factory=dict)  # ordered like registration
    failing: set[str] = field(default_factory=set)


class VerdictWindow:
    """Every probe's window, their judgements and the verdict, kept up to date."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._probes: dict[str, _Probe] = {}
        self._levels: dict[int, _Level] = {}
        self._expiry: list[tuple[float, int, str]] = []  # (oldest run, seq, probe)
        self._seq = itertools.count()

    # -- probes -----------------------------------------------------------
    def add(self, name: str, level: int, allowed_failure_ratio: float, capacity: int) -> None:
        self.remove(name)
        self._probes[name] = _Probe(name, level, allowed_failure_ratio, RunWindow(capacity))
        self._levels.setdefault(level, _Level()).probes[name] = None

    def remove(self, name: str) -> None:
        probe = self._probes.pop(name, None)
        if probe is None:
            return  # its heap entries are skipped when they come up
        level = self._levels[probe.level]
        del level.probes[name]
        level.failing.discard(name)
        if not level.probes:
            del self._levels[probe.level]

    # -- runs and time ----------------------------------------------------
    def append(self, name: str, started_at: float, ok: bool) -> None:
        probe = self._probes.get(name)
        if probe is None:
            return
        was_empty = probe.window.runs == 0
        probe.window.append(started_at, ok)
        if was_empty:
            self._push(probe)
        self._judge(probe)

    def expire(self, now: float) -> None:
        """Age out every run started before ``now - window``: O(probes whose window moved)."""
        since = now - self.window
        heap = self._expiry
        while heap and heap[0][0] < since:
            _, _, name = heapq.heappop(heap)
            probe = self._probes.get(name)
            if probe is None:
                continue
            if probe.window.expire(since):
                self._judge(probe)
            # The oldest run moved (expiry or a full ring): follow it. One pop
            # pushes at most one entry, so the heap holds about one per probe.
            if probe.window.runs:
                self._push(probe)

    # -- reading ----------------------------------------------------------
    def stats(self, name: str) -> ProbeStats:
        return self._probes[name].stats()

    def judgement(self, name: str) -> Judgement:
        return self._probes[name].judgement

    def runs(self, name: str) -> Iterator[tuple[float, bool]]:
        return self._probes[name].window.items()

    def verdict(self) -> State:
        return verdict(self._level_summaries())

    def level_states(self) -> list[LevelState]:
        return [LevelState(level=n, judgement="fail" if lv.failing else "pass",
                           probes=tuple(lv.probes),
                           failing=tuple(p for p in lv.probes if p in lv.failing))
                for n, lv in sorted(self._levels.items())]

    def _level_summaries(self) -> list[LevelState]:
        # The verdict needs only each level's judgement: no probe lists.
        return [LevelState(level=n, judgement="fail" if lv.failing else "pass",
                           probes=(), failing=())
                for n, lv in sorted(self._levels.items())]

    # -- internals --------------------------------------------------------
    def _judge(self, probe: _Probe) -> None:
        judgement = judge_window(probe.stats())
        if judgement == probe.judgement:
            return
        probe.judgement = judgement
        failing = self._levels[probe.level].failing
        if judgement == "fail":
            failing.add(probe.name)
        else:
            failing.discard(probe.name)

    def _push(self, probe: _Probe) -> None:
        oldest = probe.window.oldest()
        assert oldest is not None
        heapq.heappush(self._expiry, (oldest, next(self._seq), probe.name))
