"""What every probe shares: the result of one run and the failure reasons.

A probe measures; the runner (``monitor.runner``) does the rest: it enforces
the timeout, times the run, turns stray exceptions into ``reason="error"``
and hands the result to the recorder, the only code that touches metrics.

A probe's ``run(ctx)`` returns ``ctx.success(...)`` or ``ctx.failure(...)``,
or raises :class:`ProbeFailure` from deep inside its helpers (the runner turns
it into the same failed result). Nothing else should escape a probe: an
exception that does is a bug of ours and is reported as ``error`` with its
traceback in the log.

Exceptions of this package::

    ProbeFailure          a classified failure of the target (a result, not a bug)
    monitor.config.ConfigError   a config file that cannot be used
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, ParamSpec, TypeVar, get_args, get_origin

from monitor.config.common import ProbeBase
from monitor.metricspecs import (
    HTTP_RESPONSES,
    CounterSpec,
    GaugeSpec,
    HistogramSpec,
    PhaseSpec,
    Spec,
)

# Failure reasons: a fixed list (it is a metric label). docs/architecture.md explains each.
Reason = Literal[
    "timeout",
    "dns",
    "connect_refused",
    "connect_timeout",
    "connection_reset",
    "tls",
    "http_status",
    "assertion",
    "auth",
    "capacity",
    "protocol",
    "error",
]
REASONS: tuple[str, ...] = get_args(Reason)

# Details end up in logs, /api/status and the check table: keep them short.
MAX_DETAIL_CHARS = 512
# The --debug trace of one run; a journey or a burst can be chatty.
MAX_TRACE_LINES = 400
MAX_TRACE_LINE_CHARS = 4096


def bounded(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters, saying so."""
    if len(text) <= limit:
        return text
    return text[: limit - 14] + "... [truncated]"


class ProbeFailure(Exception):
    """The target failed the check; carries the classified reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


MetricOp = Literal["inc", "set", "observe", "touch"]  # touch: create at zero


@dataclass(frozen=True, slots=True)
class Sample:
    """One kind-specific metric update, applied by the recorder.

    ``metric`` is the name of a ``monitor.metricspecs`` handle; ``labels``
    are the labels other than ``probe`` and ``kind``.
    """

    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float
    op: MetricOp


@dataclass(slots=True)
class Result:
    """The outcome of one probe run."""

    probe: str
    kind: str
    ok: bool
    reason: Reason | None
    detail: str
    started_at: float  # wall clock, seconds since the epoch
    duration: float  # seconds, monotonic
    phases: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    # Small, kind-specific facts for /api/status and `check` (no secrets).
    facts: dict[str, Any] = field(default_factory=dict)


# The label set of a metric handle (monitor.metricspecs): keyword-only names.
L = ParamSpec("L")


class RunContext:
    """Collects what one run measures; a probe builds its Result through it.

    ``inc``, ``set`` and ``observe`` take a metric handle and its labels as
    keywords (``ctx.inc(HTTP_RESPONSES, code="200", origin="backend")``):
    mypy checks the metric's type and its label names. ``*args`` exists
    only to bind the handle's label set; label sets take no positionals.
    """

    def __init__(self, probe: str, kind: str, *, debug: bool = False,
                 phase_metric: PhaseSpec | None = None,
                 live: Callable[[str, Sample], None] | None = None) -> None:
        self.probe = probe
        self.kind = kind
        self.debug = debug
        self.phase_metric = phase_metric
        self._live = live
        self.started_at = time.time()
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}
        self.samples: list[Sample] = []
        self.trace_lines: list[str] = []
        self.facts: dict[str, Any] = {}

    # -- measurements ----------------------------------------------------
    def phase(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name`` (phases add up over redirects)."""
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def inc(self, metric: CounterSpec[L], value: float = 1.0,
            *args: L.args, **labels: L.kwargs) -> None:
        self.samples.append(Sample(metric.name, _labels(labels), value, "inc"))

    def set(self, metric: GaugeSpec[L], value: float,
            *args: L.args, **labels: L.kwargs) -> None:
        self.samples.append(Sample(metric.name, _labels(labels), value, "set"))

    def observe(self, metric: HistogramSpec[L] | GaugeSpec[L], value: float,
                *args: L.args, **labels: L.kwargs) -> None:
        """Observe into a histogram, or set a last-run gauge (the recorder
        zeroes that gauge's other series, phases this run did not reach)."""
        self.samples.append(Sample(metric.name, _labels(labels), value, "observe"))

    def live_set(self, metric: GaugeSpec[L], value: float,
                 *args: L.args, **labels: L.kwargs) -> None:
        """Set a gauge now, not when the run ends (``monitor_load_active``).

        Outside the daemon (``monitor check``) there is nothing to set.
        """
        if self._live is not None:
            self._live(self.probe, Sample(metric.name, _labels(labels), value, "set"))

    def trace(self, line: str) -> None:
        """Record a line of the --debug trace (callers redact secrets first)."""
        if self.debug and len(self.trace_lines) < MAX_TRACE_LINES:
            self.trace_lines.append(bounded(line, MAX_TRACE_LINE_CHARS))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- outcomes --------------------------------------------------------
    def success(self, detail: str = "") -> Result:
        return self._result(True, None, detail)

    def failure(self, reason: Reason, detail: str) -> Result:
        return self._result(False, reason, detail)

    def _result(self, ok: bool, reason: Reason | None, detail: str) -> Result:
        samples = list(self.samples)
        if self.phase_metric:
            samples += [
                Sample(self.phase_metric.name, (("phase", name),), seconds, "observe")
                for name, seconds in self.phases.items()
            ]
        return Result(
            probe=self.probe,
            kind=self.kind,
            ok=ok,
            reason=reason,
            detail=bounded(detail),
            started_at=self.started_at,
            duration=self.elapsed(),
            phases=dict(self.phases),
            samples=samples,
            trace=list(self.trace_lines),
            facts=dict(self.facts),
        )


# The config model of a kind (``HttpProbeConfig`` for ``HttpProbe``).
C = TypeVar("C", bound=ProbeBase)


class Probe(Generic[C]):
    """One configured probe. Built once per config; ``run`` is called per run.

    Generic over its config model: ``class HttpProbe(Probe[HttpProbeConfig])``.
    Subclasses set ``phase_metric`` when their phases are exported (the
    recorder observes each phase of ``ctx.phase`` into it, once per run).
    """

    phase_metric: ClassVar[PhaseSpec | None] = None
    # The phases a run reports; their series exist from registration on.
    phases: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # mypy cannot spell "a metric whose one label is phase" (PhaseSpec):
        # checked here, when the kind's module is imported.
        metric = cls.phase_metric
        if metric is not None and metric.labels != ("probe", "kind", "phase"):
            raise TypeError(f"{cls.__name__}.phase_metric {metric.name} must have the "
                            f"labels probe, kind, phase, not {', '.join(metric.labels)}")

    def __init__(self, config: C) -> None:
        self.config: C = config

    @classmethod
    def config_model(cls) -> type[ProbeBase]:
        """The config model this class is generic over (``Probe[HttpProbeConfig]``)."""
        for klass in cls.__mro__:
            for base in getattr(klass, "__orig_bases__", ()):
                if get_origin(base) is Probe:
                    (model,) = get_args(base)
                    if isinstance(model, type) and issubclass(model, ProbeBase):
                        return model
        raise TypeError(f"{cls.__name__} does not subclass Probe[<its config model>]")

    async def run(self, ctx: RunContext) -> Result:
        raise NotImplementedError

    def initial_samples(self) -> list[Sample]:
        """Label series to create at zero when the probe is registered,
        so that rate() has a baseline before the first fault."""
        return []

    async def close(self) -> None:
        """Release what the probe holds between runs (most hold nothing)."""

    def registration_samples(self) -> list[Sample]:
        """What the recorder creates when the probe is registered."""
        metric = self.phase_metric
        phases = [] if metric is None else [
            Sample(metric.name, (("phase", p),), 0.0, "touch") for p in self.phases]
        return [*self.initial_samples(), *phases]


# Status codes whose series exist from the start: a counter series that first
# appears with the fault has no baseline for rate().
INITIAL_CODES = ("200", "429", "500", "502", "503", "504")


def zero(metric: Spec[L], *args: L.args, **labels: L.kwargs) -> Sample:
    """A series created at zero, before any run (labels checked as in ``ctx.inc``)."""
    return Sample(metric.name, _labels(labels), 0.0, "touch")


def initial(metric: GaugeSpec[L], value: float, *args: L.args, **labels: L.kwargs) -> Sample:
    """A gauge set when the probe is registered (a configured value)."""
    return Sample(metric.name, _labels(labels), value, "set")


def _labels(labels: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(labels.items())


def response_series(origins: Iterable[str]) -> list[Sample]:
    """`monitor_http_responses_total` at zero for the usual codes x every origin."""
    names = [*dict.fromkeys(origins), "unclassified"]
    return [zero(HTTP_RESPONSES, code=code, origin=origin)
            for code in INITIAL_CODES for origin in names]
