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
from monitor.metrics import SPEC_BY_NAME, VERDICT_STATES, Metrics
from monitor.probes.base import REASONS, Result, Sample
from monitor.verdict import LevelState, ProbeStats, judge_window, levels, verdict

log = structlog.get_logger("monitor.recorder")

# Results kept per probe: enough for the verdict window at short intervals,
# bounded so a 1 s interval cannot grow memory without limit.
MAX_RING = 2000
MIN_RING = 20


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
class ProbeState:
    config: Any
    ring: deque[RecentResult]
    series: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)
    consecutive_failures: int = 0


class Recorder:
    def __init__(self, metrics: Metrics, *, verdict_window: float = 900.0,
                 clock: Any = time.time, redact: Callable[[str], str] = str) -> None:
        self.metrics = metrics
        self.redact = redact  # for label values taken from config
        self.verdict_window = verdict_window
        self.clock = clock
        self.probes: dict[str, ProbeState] = {}
        self._reported: set[str] = set()
        metrics["monitor_build_info"].labels(version=__version__).set(1)
        self.update_verdict()

    # -- probes come and go ------------------------------------------------
    def register(self, config: Any, initial: Iterable[Sample] = ()) -> None:
        """Start recording ``config``'s probe: info gauges, zero series, a ring."""
        self.forget(config.name)
        size = int(min(MAX_RING, max(MIN_RING, self.verdict_window / config.interval + 1)))
        state = ProbeState(config=config, ring=deque(maxlen=size))
        self.probes[config.name] = state
        self._write(state, "monitor_probe_info", {
            "level": str(config.level), "layer": config.layer, "service": config.service,
            "target": self.redact(config.info_target()),
        }, 1, "set")
        self._write(state, "monitor_probe_interval_seconds", {}, config.interval, "set")
        self._write(state, "monitor_probe_timeout_seconds", {}, config.timeout, "set")
        self._write(state, "monitor_probe_objective_ratio", {}, config.objective, "set")
        self._write(state, "monitor_probe_consecutive_failures", {}, 0, "set")
        for result in ("success", "failure"):
            self._write(state, "monitor_probe_runs_total", {"result": result}, 0, "inc")
        for reason in REASONS:
            self._write(state, "monitor_probe_failures_total", {"reason": reason}, 0, "inc")
        self._write(state, "monitor_probe_skipped_total", {}, 0, "inc")
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
        self.update_verdict()

    # -- runs -------------------------------------------------------------
    def record(self, result: Result) -> None:
        state = self.probes.get(result.probe)
        if state is None:
            return  # the probe was removed while it ran
        outcome = "success" if result.ok else "failure"
        self._write(state, "monitor_probe_success", {}, 1 if result.ok else 0, "set")
        self._write(state, "monitor_probe_duration_seconds", {}, result.duration, "observe")
        self._write(state, "monitor_probe_runs_total", {"result": outcome}, 1, "inc")
        if not result.ok:
            self._write(state, "monitor_probe_failures_total",
                        {"reason": result.reason or "error"}, 1, "inc")
        state.consecutive_failures = 0 if result.ok else state.consecutive_failures + 1
        self._write(state, "monitor_probe_consecutive_failures", {},
                    state.consecutive_failures, "set")
        for sample in result.samples:
            self._apply(state, sample)
        self._write(state, "monitor_probe_last_run_timestamp_seconds", {},
                    result.started_at + result.duration, "set")
        state.ring.append(RecentResult(
            started_at=result.started_at, duration=result.duration, ok=result.ok,
            reason=result.reason, detail=result.detail, phases=dict(result.phases),
            facts=dict(result.facts),
        ))
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
                    {"attribution": attribution}, 1, "inc")
        for recent in reversed(state.ring):
            if recent.facts.get("trace_id") == trace_id:
                recent.facts.update(attribution=attribution, attribution_detail=detail)
                break

    def skipped(self, name: str) -> None:
        state = self.probes.get(name)
        if state is not None:
            self._write(state, "monitor_probe_skipped_total", {}, 1, "inc")

    # -- the verdict -------------------------------------------------------
    def window_stats(self) -> list[ProbeStats]:
        since = self.clock() - self.verdict_window
        stats = []
        for name, state in self.probes.items():
            recent = [r for r in state.ring if r.started_at >= since]
            stats.append(ProbeStats(
                name=name, level=state.config.level, runs=len(recent),
                failures=sum(1 for r in recent if not r.ok),
                allowed_failure_ratio=state.config.allowed_failure_ratio,
            ))
        return stats

    def level_states(self) -> list[LevelState]:
        return levels((s, judge_window(s)) for s in self.window_stats())

    def update_verdict(self) -> str:
        state = verdict(self.level_states())
        for name in VERDICT_STATES:
            self.metrics["monitor_verdict"].labels(state=name).set(1 if name == state else 0)
        return state

    # -- writing ----------------------------------------------------------
    def _apply(self, state: ProbeState, sample: Sample) -> None:
        spec = SPEC_BY_NAME.get(sample.metric)
        labels = dict(sample.labels)
        expected = {n for n in spec.labels if n not in ("probe", "kind")} if spec else set()
        if spec is None or not spec.per_probe or set(labels) != expected:
            key = f"{sample.metric}:{sorted(labels)}"
            if key not in self._reported:  # a bug of ours: say it once, keep going
                self._reported.add(key)
                log.error("invalid sample from probe", probe=state.config.name,
                          metric=sample.metric, labels=sorted(labels))
            return
        self._write(state, sample.metric, labels, sample.value, sample.op)

    def _write(self, state: ProbeState, metric: str, labels: dict[str, str],
               value: float, op: str) -> None:
        spec = SPEC_BY_NAME[metric]
        full = {"probe": state.config.name, "kind": state.config.kind, **labels}
        values = tuple(str(full[name]) for name in spec.labels)
        child = self.metrics[metric].labels(*values)  # creates the series at zero
        if op == "touch":
            pass
        elif op == "inc":
            child.inc(value)
        elif op == "set":
            child.set(value)
        else:
            child.observe(value)
        state.series.add((metric, values))


