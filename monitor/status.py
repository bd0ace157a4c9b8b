"""The JSON of /api/status: the status page's only data source.

Shape (documented in docs/api-status.md)::

    {"version", "generated_at", "verdict", "labels",
     "levels": [{"level", "state", "probes", "failing"}],
     "layers": [{"layer", "state", "probes", "failing"}],
     "probes": [{"name", "kind", "level", "layer", "service", "target",
                 "interval_seconds", "state", "runs", "failures",
                 "success_ratio", "last": {...} | null,
                 "recent": [{"t", "ok", "duration_seconds", "reason"}]}],
     "recent_failures": [{"probe", "t", "reason", "detail", "trace_id",
                          "attribution"}]}
"""

from __future__ import annotations

import time
from typing import Any

from monitor import __version__
from monitor.recorder import RecentResult, Recorder
from monitor.redact import Redactor
from monitor.verdict import judge_window, verdict

LAYERS = ("edge", "service", "egress", "database")
# Points of each probe's sparkline, and failures listed on the page.
RECENT_POINTS = 30
RECENT_FAILURES = 20


def build_status(recorder: Recorder, labels: dict[str, str], redactor: Redactor) -> dict[str, Any]:
    stats = {s.name: s for s in recorder.window_stats()}
    judged = {name: judge_window(s) for name, s in stats.items()}
    level_states = recorder.level_states()
    probes = []
    failures: list[dict[str, Any]] = []
    for name, state in recorder.probes.items():
        config = state.config
        ring = list(state.ring)
        s = stats[name]
        probes.append({
            "name": name,
            "kind": config.kind,
            "level": config.level,
            "layer": config.layer,
            "service": config.service,
            "target": redactor.text(config.info_target()),
            "interval_seconds": config.interval,
            "state": "unknown" if not ring else ("failing" if judged[name] == "fail"
                                                 else "ok" if ring[-1].ok else "degraded"),
            "runs": s.runs,
            "failures": s.failures,
            "success_ratio": s.success_ratio,
            "last": _result(ring[-1], redactor) if ring else None,
            "recent": [
                {"t": r.started_at, "ok": r.ok, "duration_seconds": round(r.duration, 6),
                 "reason": r.reason}
                for r in ring[-RECENT_POINTS:]
            ],
        })
        failures += [
            {"probe": name, "t": r.started_at, "reason": r.reason,
             "detail": redactor.text(r.detail), "trace_id": r.facts.get("trace_id"),
             "attribution": r.facts.get("attribution")}
            for r in ring if not r.ok
        ]
    failures.sort(key=lambda f: f["t"], reverse=True)
    layers = []
    for layer in LAYERS:
        members = [p for p in probes if p["layer"] == layer]
        failing = [p["name"] for p in members if p["state"] == "failing"]
        layers.append({
            "layer": layer,
            "state": "unknown" if not members or all(p["state"] == "unknown" for p in members)
            else "failing" if failing
            else "degraded" if any(p["state"] == "degraded" for p in members)
            else "ok",
            "probes": [p["name"] for p in members],
            "failing": failing,
        })
    return {
        "version": __version__,
        "generated_at": time.time(),
        "verdict": verdict(level_states),
        "labels": labels,
        "levels": [ls.as_dict() for ls in level_states],
        "layers": layers,
        "probes": probes,
        "recent_failures": failures[:RECENT_FAILURES],
    }


def _result(r: RecentResult, redactor: Redactor) -> dict[str, Any]:
    return {
        "t": r.started_at,
        "ok": r.ok,
        "reason": r.reason,
        "detail": redactor.text(r.detail),
        "duration_seconds": round(r.duration, 6),
        "phases": {k: round(v, 6) for k, v in r.phases.items()},
        "facts": redactor.value(r.facts),
    }
