"""Result -> Prometheus metrics, and a bounded ring of recent results.

The recorder is the only code that writes metrics. It remembers every label
set it wrote for a probe, so that removing or changing the probe on reload
drops all of its series.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor import __version__
from monitor.metrics import SPEC_BY_NAME, SPECS, VERDICT_STATES, Metrics
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


@dataclass(frozen=True)
class RecentResult:
    """A result as kept in the ring: no samples, no trace."""

    started_at: float
    duration: float
    ok: bool
    reason: str | None
    detail: str
    phases: dict[str, float]
    facts: dict[str, Any]


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
    ring: deque[RecentResult]
    series: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)
    consecutive_failures: int = 0
    # (metric, label values) -> its prometheus_client child: a run writes
    # about twenty series; looking each up through .labels() cost more than
    # the write itself.
    children: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Any, Any]] = field(
        default_factory=dict)
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
        metrics["monitor_build_info"].labels(version=__version__).set(1)
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
        state = ProbeState(config=config, ring=deque(maxlen=min(size, RECENT_RUNS)))
        self.probes[config.name] = state
        self.window.add(config.name, config.level, config.allowed_failure_ratio, size)
        self._write(state, "monitor_probe_info", (
            ("level", str(config.level)), ("layer", config.layer),
            ("service", config.service), ("target", self.redact(config.info_target())),
        ), 1, "set")
        self._write(state, "monitor_probe_interval_seconds", (), config.interval, "set")
        self._write(state, "monitor_probe_timeout_seconds", (), config.timeout, "set")
        self._write(state, "monitor_probe_objective_ratio", (), config.objective, "set")
        self._write(state, "monitor_probe_consecutive_failures", (), 0, "set")
        for result in ("success", "failure"):
            self._write(state, "monitor_probe_runs_total", (("result", result),), 0, "inc")
        for reason in REASONS:
            self._write(state, "monitor_probe_failures_total", (("reason", reason),), 0, "inc")
        self._write(state, "monitor_probe_skipped_total", (), 0, "inc")
        for sample in initial:
            self._apply(state, sample)

    def forget(self, name: str) -> None:
        """Drop every series and the ring of probe ``name``."""
        state = self.probes.pop(name, None)
        if state is None:
            return
        for metric, values in state.series:
            with contextlib.suppress(KeyError):  # already gone (a rebucketed histogram)
                self.metrics[metric].remove(*values)
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
        self._write(state, "monitor_probe_success", (), 1 if result.ok else 0, "set")
        self._write(state, "monitor_probe_duration_seconds", (), result.duration, "observe")
        self._write(state, "monitor_probe_runs_total", (("result", outcome),), 1, "inc")
        if not result.ok:
            self._write(state, "monitor_probe_failures_total",
                        (("reason", result.reason or "error"),), 1, "inc")
        state.consecutive_failures = 0 if result.ok else state.consecutive_failures + 1
        self._write(state, "monitor_probe_consecutive_failures", (),
                    state.consecutive_failures, "set")
        last_run: set[str] = set()
        for sample in result.samples:
            if sample.op == "observe" and sample.metric in LAST_RUN_GAUGES \
                    and sample.metric not in last_run:
                last_run.add(sample.metric)  # a phase this run did not reach is 0
                for child in state.last_run.get(sample.metric, ()):
                    child.set(0)
            self._apply(state, sample)
        self._write(state, "monitor_probe_last_run_timestamp_seconds", (),
                    result.started_at + result.duration, "set")
        state.ring.append(RecentResult(
            started_at=result.started_at, duration=result.duration, ok=result.ok,
            reason=result.reason, detail=result.detail, phases=dict(result.phases),
            facts=dict(result.facts),
        ))
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
        self._write(state, "monitor_http_failure_attribution_total",
                    (("attribution", attribution),), 1, "inc")
        for recent in reversed(state.ring):
            if recent.facts.get("trace_id") == trace_id:
                recent.facts.update(attribution=attribution, attribution_detail=detail)
                state.version += 1  # the status page's entry shows it
                break
        for failure in self.recent_failures:
            if failure.trace_id == trace_id:
                failure.attribution = attribution

    def skipped(self, name: str) -> None:
        state = self.probes.get(name)
        if state is not None:
            self._write(state, "monitor_probe_skipped_total", (), 1, "inc")

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
                self.metrics["monitor_verdict"].labels(state=name).set(1 if name == state else 0)
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
        cached = state.children.get((metric, labels))
        if cached is None:
            spec = SPEC_BY_NAME[metric]
            full = {"probe": state.config.name, "kind": state.config.kind, **dict(labels)}
            values = tuple(str(full[name]) for name in spec.labels)
            child = self.metrics[metric].labels(*values)  # creates the series at zero
            # An observation into a gauge sets it (LAST_RUN_GAUGES).
            cached = (child, child.set if spec.type == "gauge" else getattr(child, "observe", None))
            state.children[(metric, labels)] = cached
            if metric in LAST_RUN_GAUGES:
                state.last_run.setdefault(metric, []).append(child)
            state.series.add((metric, values))
        child, observe = cached
        if op == "touch":
            pass
        elif op == "inc":
            child.inc(value)
        elif op == "set":
            child.set(value)
        else:
            observe(value)
