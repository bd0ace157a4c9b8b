"""Result -> Prometheus metrics, and a bounded ring of recent results.

The recorder is the only code that writes metrics. It remembers every label
set it wrote for a probe, so that removing or changing the probe on reload
drops all of its series.
"""

from __future__ import annotations

import contextlib
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import structlog

from monitor import __version__
from monitor.metrics import Metrics
from monitor.metricspecs import (
    BUILD_INFO,
    HTTP_ATTRIBUTION,
    PROBE_CONSECUTIVE_FAILURES,
    PROBE_DURATION,
    PROBE_FAILURES,
    PROBE_INFO,
    PROBE_INTERVAL,
    PROBE_LAST_RUN,
    PROBE_OBJECTIVE,
    PROBE_RUNS,
    PROBE_SKIPPED,
    PROBE_SUCCESS,
    PROBE_TIMEOUT,
    SPEC_BY_NAME,
    SPECS,
    VERDICT,
    VERDICT_STATES,
)
from monitor.probes.base import REASONS, Result, Sample
from monitor.verdict import LevelState, ProbeStats
from monitor.window import VerdictWindow

log = structlog.get_logger("monitor.recorder")

# Gauges a probe "observes" into: they hold the last run's values.
LAST_RUN_GAUGES = frozenset(s.name for s in SPECS if s.type == "gauge")
# Runs judged per probe: the verdict window at short intervals, bounded so
# that a 1 s interval cannot grow memory without limit (monitor.window keeps
# them at 9 bytes a run).
MAX_RING = 2000
MIN_RING = 20
# Whole results kept per probe (the status page's sparkline and last run),
# and failures kept across probes (its "recent failures").
RECENT_RUNS = 30
RECENT_FAILURES = 20
# Label tuples every probe writes, built once: shared rather than one per probe.
_RESULT_LABELS = {result: (("result", result),) for result in ("success", "failure")}
_REASON_LABELS = {reason: (("reason", reason),) for reason in REASONS}
# (metric, labels) keys of ProbeState.children, shared by every probe; label
# values come from config and fixed lists, the cap is for reloads without end.
MAX_SHARED_KEYS = 65536
_KEYS: dict[tuple[str, tuple[tuple[str, str], ...]],
            tuple[str, tuple[tuple[str, str], ...]]] = {}


class RecentResult(NamedTuple):
    """The last result of a probe as kept: no samples, no trace. A tuple of
    plain values, which the garbage collector stops walking (one per probe,
    replaced every run: a dataclass here was promoted to the old generation
    and walked by every full collection)."""

    started_at: float
    duration: float
    ok: bool
    reason: str | None
    detail: str
    phases: dict[str, float]
    facts: dict[str, Any]


class RecentRun(NamedTuple):
    """One run of the ring of recent runs (the status page's sparkline)."""

    started_at: float
    duration: float
    ok: bool
    reason: str | None


# Reason codes in the ring: 0 for none, else 1 + the index in REASONS.
_REASON_CODES = {reason: i for i, reason in enumerate(REASONS, 1)}
_CODE_REASONS: tuple[str | None, ...] = (None, *REASONS)


class RecentRuns:
    """The last ``maxlen`` runs of a probe: start, duration, ok and reason in
    arrays, 18 bytes a run. Whole result objects (details, phases, facts)
    took about 30 KiB a probe at 30 runs kept: 30 MiB at 1000 probes, a
    fifth of the daemon's memory (bench/daemon.py, RSS at N probes); only
    the last run is kept whole (``ProbeState.last``)."""

    __slots__ = ("_codes", "_durations", "_head", "_len", "_oks", "_times", "maxlen")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._times = array("d", bytes(8 * maxlen))
        self._durations = array("d", bytes(8 * maxlen))
        self._oks = bytearray(maxlen)
        self._codes = bytearray(maxlen)
        self._head = 0
        self._len = 0

    def append(self, started_at: float, duration: float, ok: bool, reason: str | None) -> None:
        if self._len == self.maxlen:
            self._head = (self._head + 1) % self.maxlen
            self._len -= 1
        slot = (self._head + self._len) % self.maxlen
        self._times[slot] = started_at
        self._durations[slot] = duration
        self._oks[slot] = ok
        self._codes[slot] = _REASON_CODES.get(reason, _REASON_CODES["error"]) if reason else 0
        self._len += 1

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> RecentRun:
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("recent run index out of range")
        slot = (self._head + index) % self.maxlen
        return RecentRun(self._times[slot], self._durations[slot], bool(self._oks[slot]),
                         _CODE_REASONS[self._codes[slot]])

    def __iter__(self) -> Iterator[RecentRun]:
        return (self[i] for i in range(self._len))


@dataclass
class RecentFailure:
    probe: str
    started_at: float
    reason: str | None
    detail: str
    trace_id: str | None = None
    attribution: Any = None


@dataclass
class ProbeState:
    config: Any
    ring: RecentRuns
    last: RecentResult | None = None
    consecutive_failures: int = 0
    # (metric, labels) -> its prometheus_client child: a run writes about
    # twenty series; looking each up through .labels() cost more than the
    # write itself.
    children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = field(default_factory=dict)
    # The series of each last-run gauge (LAST_RUN_GAUGES), to zero per run.
    last_run: dict[str, list[Any]] = field(default_factory=dict)
    # Bumped on every change the status page shows (runs, judgement).
    version: int = 0


class Recorder:
    def __init__(self, metrics: Metrics, *, verdict_window: float = 900.0,
                 clock: Any = time.time, redact: Callable[[str], str] = str) -> None:
        self.metrics = metrics
        self.redact = redact  # for label values taken from config
        self.clock = clock
        self.probes: dict[str, ProbeState] = {}
        self.window = VerdictWindow(verdict_window)
        self.recent_failures: deque[RecentFailure] = deque(maxlen=RECENT_FAILURES)
        self._reported: set[str] = set()
        self._verdict: str | None = None
        metrics.child(BUILD_INFO, version=__version__).set(1)
        self.update_verdict()

    @property
    def verdict_window(self) -> float:
        return self.window.window

    @verdict_window.setter
    def verdict_window(self, seconds: float) -> None:
        self.window.window = seconds

    # -- probes come and go ------------------------------------------------
    def register(self, config: Any, initial: Iterable[Sample] = ()) -> None:
        """Start recording ``config``'s probe: info gauges, zero series, a ring."""
        self.forget(config.name)
        size = int(min(MAX_RING, max(MIN_RING, self.verdict_window / config.interval + 1)))
        state = ProbeState(config=config, ring=RecentRuns(min(size, RECENT_RUNS)))
        self.probes[config.name] = state
        self.window.add(config.name, config.level, config.allowed_failure_ratio, size)
        self._write(state, PROBE_INFO.name, (
            ("level", str(config.level)), ("layer", config.layer),
            ("service", config.service), ("target", self.redact(config.info_target())),
        ), 1, "set")
        self._write(state, PROBE_INTERVAL.name, (), config.interval, "set")
        self._write(state, PROBE_TIMEOUT.name, (), config.timeout, "set")
        self._write(state, PROBE_OBJECTIVE.name, (), config.objective, "set")
        self._write(state, PROBE_CONSECUTIVE_FAILURES.name, (), 0, "set")
        for labels in _RESULT_LABELS.values():
            self._write(state, PROBE_RUNS.name, labels, 0, "inc")
        for labels in _REASON_LABELS.values():
            self._write(state, PROBE_FAILURES.name, labels, 0, "inc")
        self._write(state, PROBE_SKIPPED.name, (), 0, "inc")
        # At zero before the first run (rate() has a baseline), and built
        # with the config at start-up: frozen out of the collector's walk
        # (cli.serve) rather than 14 objects a probe created by the first run.
        self._write(state, PROBE_DURATION.name, (), 0, "touch")
        for sample in initial:
            self._apply(state, sample)

    def forget(self, name: str) -> None:
        """Drop every series and the ring of probe ``name``."""
        state = self.probes.pop(name, None)
        if state is None:
            return
        for metric, labels in state.children:
            with contextlib.suppress(KeyError):  # never created, or removed already
                self.metrics.named(metric).remove(*_label_values(state, metric, labels))
        self.window.remove(name)
        kept = [f for f in self.recent_failures if f.probe != name]
        self.recent_failures.clear()
        self.recent_failures.extend(kept)
        self.update_verdict()

    # -- runs -------------------------------------------------------------
    def record(self, result: Result) -> None:
        state = self.probes.get(result.probe)
        if state is None:
            return  # the probe was removed while it ran
        outcome = "success" if result.ok else "failure"
        self._write(state, PROBE_SUCCESS.name, (), 1 if result.ok else 0, "set")
        self._write(state, PROBE_DURATION.name, (), result.duration, "observe")
        self._write(state, PROBE_RUNS.name, _RESULT_LABELS[outcome], 1, "inc")
        if not result.ok:
            reason = result.reason or "error"
            self._write(state, PROBE_FAILURES.name,
                        _REASON_LABELS.get(reason) or (("reason", reason),), 1, "inc")
        state.consecutive_failures = 0 if result.ok else state.consecutive_failures + 1
        self._write(state, PROBE_CONSECUTIVE_FAILURES.name, (),
                    state.consecutive_failures, "set")
        last_run: set[str] = set()
        for sample in result.samples:
            if sample.op == "observe" and sample.metric in LAST_RUN_GAUGES \
                    and sample.metric not in last_run:
                last_run.add(sample.metric)  # a phase this run did not reach is 0
                for child in state.last_run.get(sample.metric, ()):
                    child.set(0)
            self._apply(state, sample)
        self._write(state, PROBE_LAST_RUN.name, (),
                    result.started_at + result.duration, "set")
        state.ring.append(result.started_at, result.duration, result.ok, result.reason)
        # The result's own dicts: it is dropped after this.
        state.last = RecentResult(
            started_at=result.started_at, duration=result.duration, ok=result.ok,
            reason=result.reason, detail=result.detail, phases=result.phases,
            facts=result.facts,
        )
        if not result.ok:
            self.recent_failures.append(RecentFailure(
                result.probe, result.started_at, result.reason, result.detail,
                result.facts.get("trace_id"), result.facts.get("attribution")))
        state.version += 1
        self.window.append(result.probe, result.started_at, result.ok)
        self.update_verdict()

    def live(self, name: str, sample: Sample) -> None:
        """Apply one sample while the run goes on (see RunContext.live_set)."""
        state = self.probes.get(name)
        if state is not None:
            self._apply(state, sample)

    def attributed(self, name: str, trace_id: str, attribution: str, detail: str) -> None:
        """A failed run's attribution (monitor.attribution): counted, and shown
        with the run in the ring if it is still there."""
        state = self.probes.get(name)
        if state is None:
            return
        self._write(state, HTTP_ATTRIBUTION.name,
                    (("attribution", attribution),), 1, "inc")
        last = state.last
        if last is not None and last.facts.get("trace_id") == trace_id:
            # Only the last run is kept whole (and shown with its facts).
            last.facts.update(attribution=attribution, attribution_detail=detail)
            state.version += 1  # the status page's entry shows it
        for failure in self.recent_failures:
            if failure.trace_id == trace_id:
                failure.attribution = attribution

    def skipped(self, name: str) -> None:
        state = self.probes.get(name)
        if state is not None:
            self._write(state, PROBE_SKIPPED.name, (), 1, "inc")

    # -- the verdict -------------------------------------------------------
    def window_stats(self) -> list[ProbeStats]:
        """Every probe's runs and failures in the window (after ageing it)."""
        self.window.expire(self.clock())
        return [self.window.stats(name) for name in self.probes]

    def level_states(self) -> list[LevelState]:
        self.window.expire(self.clock())
        return self.window.level_states()

    def update_verdict(self) -> str:
        """Age the window and export the verdict: O(probes whose window moved)."""
        self.window.expire(self.clock())
        state = self.window.verdict()
        if state != self._verdict:
            self._verdict = state
            for name in VERDICT_STATES:
                self.metrics.child(VERDICT, state=name).set(1 if name == state else 0)
        return state

    # -- writing ----------------------------------------------------------
    def _apply(self, state: ProbeState, sample: Sample) -> None:
        if (sample.metric, sample.labels) not in state.children:
            spec = SPEC_BY_NAME.get(sample.metric)
            names = {name for name, _ in sample.labels}
            expected = {n for n in spec.labels if n not in ("probe", "kind")} if spec else set()
            if spec is None or not spec.per_probe or names != expected \
                    or len(names) != len(sample.labels):
                key = f"{sample.metric}:{sorted(names)}"
                if key not in self._reported:  # a bug of ours: say it once, keep going
                    self._reported.add(key)
                    log.error("invalid sample from probe", probe=state.config.name,
                              metric=sample.metric, labels=sorted(names))
                return
        self._write(state, sample.metric, sample.labels, sample.value, sample.op)

    def _write(self, state: ProbeState, metric: str, labels: tuple[tuple[str, str], ...],
               value: float, op: str) -> None:
        child = state.children.get((metric, labels))
        if child is None:
            child = self._child(state, metric, labels)
        if op == "set" or (op == "observe" and metric in LAST_RUN_GAUGES):
            child.set(value)  # an observation into a gauge sets it (LAST_RUN_GAUGES)
        elif op == "observe":
            child.observe(value)
        elif op == "inc":
            child.inc(value)
        # "touch": the series exists now, at zero

    def _child(self, state: ProbeState, metric: str, labels: tuple[tuple[str, str], ...]) -> Any:
        child = self.metrics.named(metric).labels(*_label_values(state, metric, labels))
        key = (metric, labels)
        if len(_KEYS) < MAX_SHARED_KEYS:  # one key tuple for all probes
            key = _KEYS.setdefault(key, key)
        state.children[key] = child
        if metric in LAST_RUN_GAUGES:
            state.last_run.setdefault(metric, []).append(child)
        return child


def _label_values(state: ProbeState, metric: str,
                  labels: tuple[tuple[str, str], ...]) -> list[str]:
    """The values of a probe's series in the order of the metric's label names."""
    full = {"probe": state.config.name, "kind": state.config.kind, **dict(labels)}
    return [str(full[name]) for name in SPEC_BY_NAME[metric].labels]
