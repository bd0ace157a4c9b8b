"""`monitor check`: the probes once, or sampled for a duration, and a verdict.

Without --duration every probe runs once and a level passes when all of its
probes succeed (a smoke test). With --duration each probe is sampled
repeatedly and judged by the 95 % Wilson interval of its failure rate
against its allowed_failure_ratio; too few samples give "inconclusive"
(exit 4) with the number of runs a decision would need. Never a guess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from monitor.config import Config, ProbeConfig
from monitor.config.types import parse_duration
from monitor.exitcodes import VERDICT_EXIT, ExitCode
from monitor.probes import build_probe
from monitor.probes.base import Probe, Result
from monitor.redact import Redactor
from monitor.runner import run_once
from monitor.verdict import (
    LevelState,
    ProbeStats,
    judge,
    levels,
    samples_needed,
    verdict,
)


@dataclass(frozen=True)
class CheckOptions:
    level: int | None = None
    probes: tuple[str, ...] = ()
    duration: float | None = None
    every: float | None = None
    format: str = "text"
    debug: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CheckOptions:
        duration = _positive("--duration", args.duration)
        every = _positive("--every", args.every)
        if every is not None and duration is None:
            raise ValueError("--every needs --duration")
        return cls(level=args.level, probes=tuple(args.probe or ()), duration=duration,
                   every=every, format=args.format, debug=args.debug)


def _positive(flag: str, value: str | None) -> float | None:
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{flag} must be longer than 0")
    return seconds


@dataclass
class ProbeReport:
    config: ProbeConfig
    results: list[Result]

    def stats(self) -> ProbeStats:
        return ProbeStats(
            name=self.config.name, level=self.config.level, runs=len(self.results),
            failures=sum(1 for r in self.results if not r.ok),
            allowed_failure_ratio=self.config.allowed_failure_ratio,
        )


def select(config: Config, options: CheckOptions) -> list[ProbeConfig]:
    names = {p.name for p in config.probes}
    unknown = [n for n in options.probes if n not in names]
    if unknown:
        raise ValueError(f"no probe named {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(names))})")
    chosen = [
        p for p in config.probes
        if (not options.probes or p.name in options.probes)
        and (options.level is None or p.level <= options.level)
    ]
    if not chosen:
        raise ValueError("no probe matches the selection")
    return chosen


def run_check(config: Config, options: CheckOptions, redactor: Redactor,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> ExitCode:
    try:
        chosen = select(config, options)
    except ValueError as error:
        print(f"monitor check: {error}", file=err)
        return ExitCode.CONFIG
    reports = asyncio.run(_sample(chosen, options, redactor, err if options.format == "json"
                                  else out, err))
    smoke = options.duration is None
    judged = [(r.stats(), judge(r.stats(), smoke=smoke)) for r in reports]
    level_states = levels(judged)
    state = verdict(level_states)
    if options.format == "json":
        json.dump(_as_json(state, level_states, reports, judged), out, indent=2)
        out.write("\n")
    else:
        _print_text(state, level_states, reports, judged, smoke, out)
    return VERDICT_EXIT[state]


async def _sample(chosen: list[ProbeConfig], options: CheckOptions, redactor: Redactor,
                  trace_out: TextIO, err: TextIO) -> list[ProbeReport]:
    reports = [ProbeReport(config=c, results=[]) for c in chosen]
    probes = [build_probe(c) for c in chosen]
    console = Console(file=trace_out, highlight=False, soft_wrap=True)

    def show(result: Result) -> None:
        if options.debug:
            _print_trace(result, console)

    try:
        if options.duration is None:
            results = await asyncio.gather(*(
                run_once(p, redactor=redactor, debug=options.debug, on_result=show)
                for p in probes
            ))
            for report, result in zip(reports, results, strict=True):
                report.results.append(result)
            return reports
        duration = options.duration
        deadline = time.monotonic() + duration
        progress = Progress(
            TextColumn("sampling"), BarColumn(), TextColumn("{task.fields[runs]} runs"),
            TimeRemainingColumn(), console=Console(file=err),
            disable=not Console(file=err).is_terminal,
        )
        with progress:
            bar = progress.add_task("check", total=duration, runs=0)

            async def tick() -> None:
                while (left := deadline - time.monotonic()) > 0:
                    runs = sum(len(r.results) for r in reports)
                    progress.update(bar, completed=duration - left, runs=runs)
                    await asyncio.sleep(min(0.5, left))

            await asyncio.gather(tick(), *(
                _repeat(p, r, options, redactor, deadline, show)
                for p, r in zip(probes, reports, strict=True)
            ))
        return reports
    finally:
        for probe in probes:
            await probe.close()


async def _repeat(probe: Probe[Any], report: ProbeReport, options: CheckOptions,
                  redactor: Redactor, deadline: float, show: Callable[[Result], None]) -> None:
    # --every samples faster, but never faster than a kind allows (a burst or a
    # load test run back to back would become the outage it measures).
    every = max(options.every, report.config.min_interval) if options.every \
        else report.config.interval
    next_start = time.monotonic()
    while next_start < deadline:
        result = await run_once(probe, redactor=redactor, debug=options.debug,
                                on_result=show)
        report.results.append(result)
        next_start += every
        wait = next_start - time.monotonic()
        if wait > 0 and next_start < deadline:
            await asyncio.sleep(wait)


def _print_trace(result: Result, console: Console) -> None:
    outcome = "ok" if result.ok else f"FAILED {result.reason}"
    console.print(f"--- {result.probe} ({result.kind}): {outcome} in "
                  f"{result.duration * 1000:.1f} ms", markup=False)
    for name, seconds in result.phases.items():
        console.print(f"    phase {name}: {seconds * 1000:.2f} ms", markup=False)
    for line in result.trace:
        console.print("    " + line.replace("\n", "\n    "), markup=False)
    if result.detail:
        console.print(f"    detail: {result.detail}", markup=False)


def _p50(report: ProbeReport) -> float | None:
    durations = [r.duration for r in report.results]
    return statistics.median(durations) if durations else None


def _as_json(state: str, level_states: list[LevelState], reports: list[ProbeReport],
             judged: Sequence[tuple[ProbeStats, str]]) -> dict[str, Any]:
    probes = []
    for report, (stats, judgement) in zip(reports, judged, strict=True):
        ci_low, ci_high = stats.success_interval()
        last = report.results[-1] if report.results else None
        probes.append({
            "name": stats.name,
            "kind": report.config.kind,
            "level": stats.level,
            "runs": stats.runs,
            "successes": stats.successes,
            "success_ratio": stats.success_ratio,
            "ci_low": round(ci_low, 6),
            "ci_high": round(ci_high, 6),
            "last_reason": last.reason if last else None,
            "last_detail": last.detail if last else None,
            "duration_seconds": _p50(report),
            "judgement": judgement,
            "samples_needed": samples_needed(stats) if judgement == "inconclusive" else None,
        })
    return {
        "verdict": state,
        "levels": [ls.as_dict() for ls in level_states],
        "probes": probes,
    }


def _print_text(state: str, level_states: list[LevelState], reports: list[ProbeReport],
                judged: Sequence[tuple[ProbeStats, str]], smoke: bool, out: TextIO) -> None:
    console = Console(file=out, highlight=False)
    table = Table(show_lines=False)
    for column in ("probe", "kind", "level", "runs", "success (95% CI)", "judgement",
                   "last reason", "p50"):
        table.add_column(column, justify="right" if column in ("runs", "p50") else "left")
    for report, (stats, judgement) in zip(reports, judged, strict=True):
        low, high = stats.success_interval()
        ratio = stats.success_ratio
        success = "-" if ratio is None else (
            f"{ratio:.1%}" if smoke else f"{ratio:.1%} [{low:.1%}, {high:.1%}]"
        )
        last = report.results[-1] if report.results else None
        reason = "" if last is None or last.ok else f"{last.reason}: {last.detail}"
        p50 = _p50(report)
        cells = (stats.name, report.config.kind, str(stats.level), str(stats.runs), success,
                 judgement, reason, "-" if p50 is None else f"{p50 * 1000:.0f} ms")
        table.add_row(*(Text(cell) for cell in cells))  # details are data, not markup
    console.print(table)
    for ls in level_states:
        failing = f" (failing: {', '.join(ls.failing)})" if ls.failing else ""
        console.print(f"level {ls.level}: {ls.judgement}{failing}", markup=False)
    for stats, judgement in judged:
        if judgement == "inconclusive":
            needed = samples_needed(stats)
            more = ("no number of runs would decide at this failure rate" if needed is None
                    else f"about {needed} runs in total would decide")
            console.print(
                f"{stats.name}: {stats.failures} failures in {stats.runs} runs cannot show a "
                f"failure rate {'below' if stats.failures == 0 else 'above or below'} "
                f"{stats.allowed_failure_ratio:.0%} with 95 % confidence; {more}",
                markup=False,
            )
    console.print(f"verdict: {state}", markup=False)


__all__ = ["CheckOptions", "run_check"]
