"""The shipped alert rules, evaluated by Prometheus' own rule engine over
modelled probe runs: how long from a fault to the page, and how often noise pages.

Three parts, each as the real thing behaves:

- **The daemon** (:func:`simulate`): a probe runs every ``interval`` plus
  APScheduler's jitter (``uniform(0, jitter x interval)`` added to the previous
  fire time), a failed run brings the next one forward to half an interval
  after its start (never before it ended: confirmation runs, see
  ``monitor/scheduler.py``), a hanging target makes a run last its
  ``timeout``. At the end of each run the daemon's counters and gauges change
  as the recorder changes them.
- **Prometheus**: the series are scraped every ``scrape_interval`` at a chosen
  offset and evaluated by ``promtool test rules`` with the repository's rule
  files every ``evaluation_interval`` (the rule engine of Prometheus itself:
  ``increase()`` extrapolation, ``for``, ``keep_firing_for``). The firing
  intervals of every alert are read back from the ``ALERTS`` series.
- **Alertmanager** (:func:`notifications`): a new group is notified
  ``group_wait`` after its first alert arrives; later changes, resolved
  included, at the next ``group_interval`` tick of that group.

Scrape offsets are placed to the second with ``_`` (no sample) in a 1 s
input grid, so that every alignment of probe runs, scrapes and evaluations
can be tried.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "rules"

# What a request to the target gets at a moment: an answer that counts as
# good, a 5xx, a 429, or nothing until the timeout (a hang, a blackhole).
Answer = str  # "ok" | "5xx" | "429" | "hang" | "refused"
Behaviour = Callable[[float, random.Random], Answer]  # (time, rng) -> answer
# The failure reason of a request that got this outcome (as the probes classify).
CAUSE = {"5xx": "http_status", "429": "capacity", "hang": "timeout",
         "refused": "connect_refused"}


@dataclass(frozen=True)
class ProbeModel:
    """One probe as configured; ``requests`` responses per run (lb: 10)."""

    name: str
    kind: str = "http"
    level: int = 1
    layer: str = "service"
    service: str = "web"
    interval: float = 10.0
    timeout: float = 5.0
    jitter: float = 0.1
    requests: int = 1
    # lb: a run fails when more than this share of its responses is bad.
    max_error_ratio: float = 0.1
    objective: float = 0.99
    confirm: bool = True  # a failed run brings the next one forward


@dataclass
class Run:
    start: float
    end: float
    ok: bool
    reason: str | None
    good: int
    bad_5xx: int
    bad_429: int


def simulate(probe: ProbeModel, behaviour: Behaviour, until: float, *,
             first_start: float, rng: random.Random) -> list[Run]:
    """The runs of ``probe`` from ``first_start`` to ``until`` (seconds)."""
    runs: list[Run] = []
    scheduled = first_start
    while scheduled < until:
        start = scheduled
        outcomes = [behaviour(start, rng) for _ in range(probe.requests)]
        hung = "hang" in outcomes
        causes = [CAUSE[o] for o in outcomes if o != "ok"]
        good = probe.requests - len(causes)
        if probe.requests == 1:
            ok = not causes
        else:  # lb: a run fails above max_error_ratio, with the most common cause
            ok = len(causes) / probe.requests <= probe.max_error_ratio
        reason = None if ok else Counter(causes).most_common(1)[0][0]
        end = start + (probe.timeout if hung else 0.005)
        runs.append(Run(start, end, ok, reason, good, outcomes.count("5xx"),
                        outcomes.count("429")))
        # APScheduler: the next fire time is the previous one plus the interval
        # plus uniform(0, jitter); a failed run moves it forward (confirmation).
        following = start + probe.interval + rng.uniform(0, probe.jitter * probe.interval)
        if not ok and probe.confirm:
            following = min(following, max(end, start + probe.interval / 2))
        scheduled = max(following, end)
    return runs


# -- series as scraped -----------------------------------------------------------
@dataclass
class Scraped:
    """Scraped values of one probe's series at each scrape time."""

    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    values: dict[str, list[float | None]] = field(default_factory=dict)
    offset: int = 0  # seconds after each scrape tick, on the evaluation grid


REASONS = ("timeout", "connect_refused", "capacity", "http_status")


def scrape(probe: ProbeModel, runs: Sequence[Run], *, until: float, every: int = 15,
           offset: int = 0, job: str = "monitor", vantage: str = "sim") -> Scraped:
    """What /metrics shows at each scrape, ``offset + k x every`` seconds
    (a run counts once it ended)."""
    base = {"job": job, "instance": "sim:9469", "vantage": vantage,
            "probe": probe.name, "kind": probe.kind}
    out = Scraped(offset=offset)
    times = [offset + k * every for k in range(int((until - offset) // every) + 1)]

    def series(key: str, name: str, **extra: str) -> None:
        out.labels[key] = {"__name__": name, **base, **extra}
        out.values[key] = []

    series("up", "up")
    out.labels["up"] = {"__name__": "up", "job": job, "instance": base["instance"],
                        "vantage": vantage}
    series("info", "monitor_probe_info", level=str(probe.level), layer=probe.layer,
           service=probe.service, target="https://sim/")
    series("interval", "monitor_probe_interval_seconds")
    series("objective", "monitor_probe_objective_ratio")
    series("ok", "monitor_probe_runs_total", result="success")
    series("failed", "monitor_probe_runs_total", result="failure")
    for reason in REASONS:
        series(f"r:{reason}", "monitor_probe_failures_total", reason=reason)
    series("streak", "monitor_probe_consecutive_failures")
    series("last", "monitor_probe_last_run_timestamp_seconds")
    http = probe.kind in ("http", "lb", "journey")
    if http:
        for code in ("200", "429", "503"):
            series(f"c:{code}", "monitor_http_responses_total", code=code,
                   origin="unclassified")
    index = 0
    ok = failed = streak = good = n5xx = n429 = 0
    by_reason = dict.fromkeys(REASONS, 0)
    last: float | None = None
    for t in times:
        while index < len(runs) and runs[index].end <= t:
            run = runs[index]
            index += 1
            if run.ok:
                ok += 1
                streak = 0
            else:
                failed += 1
                streak += 1
                by_reason[run.reason or "http_status"] += 1
            good += run.good
            n5xx += run.bad_5xx
            n429 += run.bad_429
            last = run.end
        values: dict[str, float | None] = {
            "up": 1, "info": 1, "interval": probe.interval, "objective": probe.objective,
            "ok": ok, "failed": failed, "streak": streak, "last": last,
        }
        for reason in REASONS:
            values[f"r:{reason}"] = by_reason[reason]
        if http:
            values |= {"c:200": good, "c:429": n429, "c:503": n5xx}
        for key, value in values.items():
            out.values[key].append(value)
    return out


# -- promtool ---------------------------------------------------------------------
def _series_name(labels: dict[str, str]) -> str:
    name = labels["__name__"]
    rest = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    return f"{name}{{{rest}}}"


def _values_text(values: Sequence[float | None], spacing: int, offset: int) -> str:
    """Values on a 1 s grid: ``offset`` empty seconds, then one value every
    ``spacing`` seconds with ``_`` between (promtool: no sample)."""
    parts: list[str] = []
    if offset:
        parts.append(f"_x{offset}" if offset > 1 else "_")
    gap = f"_x{spacing - 1}" if spacing > 2 else ("_" if spacing == 2 else "")
    for i, value in enumerate(values):
        parts.append("_" if value is None else _number(value))
        if gap and i < len(values) - 1:
            parts.append(gap)
    return " ".join(parts)


def _run_length(values: Sequence[float | None]) -> str:
    """promtool's expanding notation: ``a+bxn`` for ``a`` and n steps of ``b``."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        first = values[i]
        if first is None:
            parts.append("_")
            i += 1
            continue
        j, step = i, 0.0
        while j + 1 < len(values):
            following = values[j + 1]
            if following is None or (j > i and following - values[j] != step):  # type: ignore[operator]
                break
            step = following - values[j]  # type: ignore[operator]
            j += 1
        if j == i:
            parts.append(_number(first))
        else:
            sign = "+" if step >= 0 else "-"
            parts.append(f"{_number(first)}{sign}{_number(abs(step))}x{j - i}")
        i = j + 1
    return " ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Firing:
    """The evaluations at which one alert of one probe was firing."""

    alertname: str
    probe: str
    severity: str
    times: tuple[float, ...]

    @property
    def first(self) -> float:
        return self.times[0]

    def episodes(self, evaluation_interval: float = 15.0) -> list[tuple[float, float]]:
        """(first, last) evaluation of each uninterrupted firing stretch."""
        out: list[tuple[float, float]] = []
        for t in self.times:
            if out and t - out[-1][1] <= evaluation_interval + 1e-6:
                out[-1] = (out[-1][0], t)
            else:
                out.append((t, t))
        return out


def _input_series(scraped: Iterable[Scraped], scrape_interval: int, grid: int
                  ) -> list[dict[str, str]]:
    series = []
    for probe in scraped:
        for key, labels in probe.labels.items():
            if grid == 1:
                text = _values_text(probe.values[key], scrape_interval, probe.offset)
            else:
                text = _run_length(probe.values[key])
            series.append({"series": _series_name(labels), "values": text})
    return series


def _promtool(rule_files: Sequence[Path] | None, evaluation_interval: int, grid: int,
              series: list[dict[str, str]], queries: list[tuple[str, int]]) -> str:
    """Run ``queries`` (expr, eval time) after evaluating the rules; promtool's report.

    Every query expects a sample that cannot exist, so promtool prints what
    it got for each one."""
    if shutil.which("promtool") is None:
        raise RuntimeError("needs promtool (apt-get install prometheus)")
    files = list(rule_files or sorted(RULES.glob("*.yml")))
    never = [{"labels": '{never="matches"}', "value": 0}]
    test = {
        "rule_files": [str(p) for p in files],
        "evaluation_interval": f"{evaluation_interval}s",
        "tests": [{
            "interval": f"{grid}s",
            "input_series": series,
            "promql_expr_test": [{"expr": expr, "eval_time": f"{at}s", "exp_samples": never}
                                 for expr, at in queries],
        }],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sim.test.yml"
        path.write_text(yaml.safe_dump(test, width=1 << 30))
        result = subprocess.run(["promtool", "test", "rules", str(path)],
                                capture_output=True, text=True, check=False, timeout=3600)
    output = result.stdout + result.stderr
    if "FAILED" not in output or output.count("expr: ") != len(queries):
        raise RuntimeError(f"unexpected promtool output:\n{output[-4000:]}")
    return output


FIRING = 'ALERTS{alertstate="firing"}'
_SAMPLE = re.compile(r'(\{[^}]*\}) ([^,\s]+)')


def _got(output: str, keyed_by: tuple[str, ...] = ("alertname", "probe", "severity"),
         ) -> list[list[tuple[tuple[str, ...], float]]]:
    """The samples promtool got, query by query, keyed by ``keyed_by`` labels."""
    answers: list[list[tuple[tuple[str, ...], float]]] = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("expr: "):
            answers.append([])
        elif line.startswith("got:"):
            for match in _SAMPLE.finditer(line):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
                key = tuple(labels.get(name, "") for name in keyed_by)
                answers[-1].append((key, float(match[2])))
    return answers


def evaluate(scraped: Iterable[Scraped], *, until: float, scrape_interval: int = 15,
             evaluation_interval: int = 15, rule_files: Sequence[Path] | None = None,
             ) -> list[Firing]:
    """Every alert that fired, with the evaluations at which it fired.

    The series are placed on a 1 s grid (each probe's scrapes at its offset).
    """
    series = _input_series(scraped, scrape_interval, grid=1)
    times = list(range(evaluation_interval, int(until) + 1, evaluation_interval))
    output = _promtool(rule_files, evaluation_interval, 1, series,
                       [(FIRING, t) for t in times])
    firing: dict[tuple[str, ...], list[float]] = {}
    for t, samples in zip(times, _got(output), strict=True):
        for key, _ in samples:
            firing.setdefault(key, []).append(float(t))
    return [Firing(alertname=key[0], probe=key[1], severity=key[2], times=tuple(ts))
            for key, ts in sorted(firing.items())]


@dataclass(frozen=True)
class PageCount:
    """Pages over a long run: per probe (its page group starting to fire) and,
    to see which rule raised them, rising edges per alert."""

    per_probe: dict[str, int]
    per_alert: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.per_probe.values())


def count_pages(scraped: Iterable[Scraped], *, until: float, scrape_interval: int = 15,
                evaluation_interval: int = 15,
                rule_files: Sequence[Path] | None = None) -> PageCount:
    """How many times each probe's page group started firing (a page alert
    firing after none was); for long runs, scrapes at offset 0."""
    if scrape_interval % evaluation_interval and evaluation_interval % scrape_interval:
        raise ValueError("long runs need commensurate scrape and evaluation intervals")
    series = _input_series(scraped, scrape_interval, grid=scrape_interval)
    end = int(until // evaluation_interval * evaluation_interval)
    pages = 'ALERTS{alertstate="firing",severity="page"}'
    window = f"[{end}s:{evaluation_interval}s]"

    def rising(by: str) -> str:
        now = f"count by ({by}) ({pages})"
        before = f"count by ({by}) ({pages} offset {evaluation_interval}s)"
        return f"sum by ({by}) (sum_over_time(({now} unless on ({by}) {before}){window}))"

    output = _promtool(rule_files, evaluation_interval, scrape_interval, series,
                       [(rising("probe"), end), (rising("alertname, probe"), end)])
    per_alert: dict[str, int] = {}
    for (name, _), value in _got(output, keyed_by=("alertname", "probe"))[1]:
        per_alert[name] = per_alert.get(name, 0) + int(value)
    return PageCount({key[0]: int(value) for key, value in _got(output, keyed_by=("probe",))[0]},
                     per_alert)


# -- Alertmanager -----------------------------------------------------------------
@dataclass(frozen=True)
class Notification:
    at: float
    firing: frozenset[str]  # alertnames firing in the group then; empty: resolved


@dataclass(frozen=True)
class Pager:
    """What one probe's page group sent (the page route groups by vantage, probe)."""

    probe: str
    notifications: tuple[Notification, ...]

    @property
    def pages(self) -> list[float]:
        """Times of the notifications that opened an incident (firing after
        nothing, or after a resolved notification)."""
        opened, out = False, []
        for note in self.notifications:
            if note.firing and not opened:
                out.append(note.at)
            opened = bool(note.firing)
        return out

    @property
    def resolved(self) -> list[float]:
        return [n.at for n in self.notifications if not n.firing]


def alertmanager(firings: Iterable[Firing], *, until: float, group_wait: float = 10.0,
                 group_interval: float = 15.0, evaluation_interval: float = 15.0,
                 severity: str = "page") -> dict[str, Pager]:
    """Alertmanager's notifications for each probe's page group.

    Prometheus sends the alerts after every evaluation; a new group is flushed
    ``group_wait`` after its first alert, then every ``group_interval``; a
    flush notifies when the firing set changed since the last notification
    (resolved alerts included: ``send_resolved``); a group whose alerts have
    all resolved and been notified is deleted, and the next alert starts a
    new one.
    """
    by_probe: dict[str, list[Firing]] = {}
    for firing in firings:
        if firing.severity == severity:
            by_probe.setdefault(firing.probe, []).append(firing)
    out = {}
    for probe, members in by_probe.items():
        sets = {n: set(f.times) for f in members for n in [f.alertname]}

        def firing_at(t: float, sets: dict[str, set[float]] = sets) -> frozenset[str]:
            last_eval = math.floor(t / evaluation_interval + 1e-9) * evaluation_interval
            return frozenset(n for n, times in sets.items() if last_eval in times)

        notes: list[Notification] = []
        evals = sorted({t for f in members for t in f.times})
        t, index = 0.0, 0
        while index < len(evals):
            start = evals[index]
            flush = start + group_wait
            notified: frozenset[str] = frozenset()
            while flush <= until:
                now = firing_at(flush)
                if now != notified:
                    notes.append(Notification(flush, now))
                    notified = now
                if not now:
                    break  # every alert resolved and notified: the group is gone
                flush += group_interval
            t = flush
            index = next((i for i, e in enumerate(evals) if e > t), len(evals))
        out[probe] = Pager(probe, tuple(notes))
    return out


# -- scenarios ---------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeSeen:
    """What one probe of a scenario saw: when the fault began and ended, and
    what its page group sent."""

    fault_at: float
    recover_at: float | None
    pager: Pager | None

    @property
    def pages(self) -> list[float]:
        return self.pager.pages if self.pager else []

    @property
    def time_to_page(self) -> float | None:
        later = [t - self.fault_at for t in self.pages if t >= self.fault_at]
        return later[0] if later else None

    @property
    def time_to_resolve(self) -> float | None:
        if self.recover_at is None or self.pager is None:
            return None
        later = [t - self.recover_at for t in self.pager.resolved if t >= self.recover_at]
        return later[0] if later else None


Fault = Callable[[float, random.Random], Answer]  # (seconds since the fault began, rng)

# Healthy history before a fault: longer than the longest page window (30m),
# so that the windows hold a healthy past as they do in production.
WARM_UP = 2400.0


def scenario(probe: ProbeModel, fault: Fault, *, duration: float,
             recover_after: float | None = None, alignments: int = 30, seed: int = 1,
             group_interval: float = 15.0, rule_files: Sequence[Path] | None = None,
             ) -> list[ProbeSeen]:
    """``alignments`` copies of ``probe``, each with its own phase of runs,
    scrape offset and fault time, faulty from ``WARM_UP`` for ``recover_after``
    seconds (or to the end), evaluated until ``WARM_UP + duration``."""
    rng = random.Random(seed)
    until = WARM_UP + duration
    scraped, times = [], {}
    for index in range(alignments):
        copy = ProbeModel(**{**probe.__dict__, "name": f"{probe.name}-{index}"})
        fault_at = WARM_UP + rng.uniform(0, probe.interval)
        recover_at = None if recover_after is None else fault_at + recover_after

        def behaviour(t: float, r: random.Random, fault_at: float = fault_at,
                      recover_at: float | None = recover_at) -> Answer:
            if t >= fault_at and (recover_at is None or t < recover_at):
                return fault(t - fault_at, r)
            return "ok"

        runs = simulate(copy, behaviour, until, first_start=rng.uniform(0, probe.interval),
                        rng=rng)
        # A scrape in the very millisecond of an evaluation (offset 0) is
        # promtool's grid, not production's: offsets 1-14 s.
        scraped.append(scrape(copy, runs, until=until, offset=rng.randrange(1, 15)))
        times[copy.name] = (fault_at, recover_at)
    firings = evaluate(scraped, until=until, rule_files=rule_files)
    pagers = alertmanager(firings, until=until, group_interval=group_interval)
    return [ProbeSeen(fault_at, recover_at, pagers.get(name))
            for name, (fault_at, recover_at) in times.items()]


def always(outcome: Answer) -> Fault:
    return lambda _t, _r: outcome


def share(outcome: Answer, ratio: float) -> Fault:
    """Each request independently gets ``outcome`` with probability ``ratio``."""
    return lambda _t, r: outcome if r.random() < ratio else "ok"


def alternating(outcome: Answer) -> Fault:
    """Every other run fails (a flapping target)."""
    state = {"n": 0}

    def fault(_t: float, _r: random.Random) -> Answer:
        state["n"] += 1
        return outcome if state["n"] % 2 else "ok"

    return fault
