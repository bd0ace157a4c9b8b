"""The JSON of /api/status: the status page's only data source.

Shape (documented in docs/api-status.md)::

    {"version", "generated_at", "verdict", "labels",
     "levels": [{"level", "state", "probes", "failing"}],
     "layers": [{"layer", "state", "probes", "failing"}],
     "counts": {"ok", "degraded", "failing", "unknown"}, "total", "matched",
     "probes": [{"name", "kind", "level", "layer", "service", "target",
                 "interval_seconds", "state", "runs", "failures",
                 "success_ratio", "last": {...} | null,
                 "recent": [{"t", "ok", "duration_seconds", "reason"}]}],
     "recent_failures": [{"probe", "t", "reason", "detail", "trace_id",
                          "attribution"}]}

``probes`` can be narrowed (``StatusQuery``): by state, by a substring of
the name, ordered worst first, one page at a time; the status page asks for
one page of 50, so 1000 probes cost it what 50 do.

Each probe's entry is built once per change (a run, or its window moving)
and kept: a request costs O(probes) dictionary lookups plus the entries
that changed, not O(probes x window). The bulky parts of an entry (``last``
and ``recent``: 31 dictionaries) are built only for the probes a response
lists: kept for every probe they took 6 MiB at 1000 probes, rebuilt after
every run anyway.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor import __version__
from monitor.recorder import ProbeState, RecentResult, Recorder
from monitor.redact import Redactor
from monitor.verdict import ProbeStats, verdict

LAYERS = ("edge", "service", "egress", "database")
STATES = ("failing", "degraded", "unknown", "ok")  # worst first
# Points of each probe's sparkline (the recorder keeps as many).
RECENT_POINTS = 30
MAX_LIMIT = 1000


@dataclass(frozen=True)
class StatusQuery:
    """Which probes /api/status lists: ?state=failing,degraded&q=edge&order=severity
    &offset=0&limit=50 (every parameter optional; without any, all probes in
    config order)."""

    states: frozenset[str] = frozenset(STATES)
    name: str = ""
    severity_order: bool = False
    offset: int = 0
    limit: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> StatusQuery:
        """Raise ValueError with a sentence for a bad parameter."""
        states = frozenset(STATES)
        if params.get("state"):
            states = frozenset(params["state"].split(","))
            if not states <= set(STATES):
                raise ValueError(f"state must be among {', '.join(STATES)}")
        order = params.get("order", "config")
        if order not in ("config", "severity"):
            raise ValueError("order must be config or severity")
        try:
            offset = int(params.get("offset", "0"))
            limit = int(params["limit"]) if "limit" in params else None
        except ValueError:
            raise ValueError("offset and limit must be integers") from None
        if offset < 0 or (limit is not None and not 0 < limit <= MAX_LIMIT):
            raise ValueError(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
        return cls(states, params.get("q", "")[:200], order == "severity", offset, limit)


class StatusBuilder:
    """Builds /api/status, keeping each probe's entry until the probe changes."""

    def __init__(self, recorder: Recorder, redactor: Redactor) -> None:
        self.recorder = recorder
        self.redactor = redactor
        # name -> (key, entry): tuples and dicts of plain values only, which
        # the garbage collector need not walk (no reference to the state).
        self._entries: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def build(self, labels: dict[str, str], query: StatusQuery | None = None,
              generation: object = None) -> dict[str, Any]:
        """``generation``: entries built under another one are built anew."""
        query = query or StatusQuery()
        recorder = self.recorder
        recorder.update_verdict()  # ages the window
        window = recorder.window
        entries = []
        for name, state in recorder.probes.items():
            stats = window.stats(name)
            judgement = window.judgement(name)
            key = (generation, id(state), state.version, judgement, stats.runs, stats.failures)
            cached = self._entries.get(name)
            if cached is None or cached[0] != key:
                cached = (key, self._entry(name, state, stats, judgement))
                self._entries[name] = cached
            entries.append(cached[1])
        for gone in self._entries.keys() - recorder.probes.keys():
            del self._entries[gone]
        counts = dict.fromkeys(STATES, 0)
        for entry in entries:
            counts[entry["state"]] += 1
        level_states = recorder.level_states()
        selected = [e for e in entries
                    if e["state"] in query.states and query.name in e["name"]]
        if query.severity_order:
            rank = {s: i for i, s in enumerate(STATES)}
            selected.sort(key=lambda e: rank[e["state"]])  # stable: config order within
        end = None if query.limit is None else query.offset + query.limit
        return {
            "version": __version__,
            "generated_at": time.time(),
            "verdict": verdict(level_states),
            "labels": labels,
            "levels": [ls.as_dict() for ls in level_states],
            "layers": _layers(entries),
            "counts": counts,
            "total": len(entries),
            "matched": len(selected),
            "probes": [self._full(e) for e in selected[query.offset:end]],
            "recent_failures": [
                {"probe": f.probe, "t": f.started_at, "reason": f.reason,
                 "detail": self.redactor.text(f.detail), "trace_id": f.trace_id,
                 "attribution": f.attribution}
                for f in reversed(recorder.recent_failures)
            ],
        }

    def _entry(self, name: str, state: ProbeState, stats: ProbeStats,
               judgement: str) -> dict[str, Any]:
        config = state.config
        ring = state.ring
        return {
            "name": name,
            "kind": config.kind,
            "level": config.level,
            "layer": config.layer,
            "service": config.service,
            "target": self.redactor.text(config.info_target()),
            "interval_seconds": config.interval,
            "state": "unknown" if not ring else ("failing" if judgement == "fail"
                                                 else "ok" if ring[-1].ok else "degraded"),
            "runs": stats.runs,
            "failures": stats.failures,
            "success_ratio": stats.success_ratio,
        }

    def _full(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A kept entry with its last run and sparkline."""
        state = self.recorder.probes[entry["name"]]
        ring = state.ring
        last = state.last
        return {
            **entry,
            "last": _result(last, self.redactor) if last is not None and ring else None,
            "recent": [
                {"t": r.started_at, "ok": r.ok, "duration_seconds": round(r.duration, 6),
                 "reason": r.reason}
                for r in list(ring)[-RECENT_POINTS:]
            ],
        }


def build_status(recorder: Recorder, labels: dict[str, str], redactor: Redactor,
                 query: StatusQuery | None = None) -> dict[str, Any]:
    """One /api/status body, without a cache kept between calls."""
    return StatusBuilder(recorder, redactor).build(labels, query)


def _layers(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    layers = []
    for layer in LAYERS:
        members = [p for p in entries if p["layer"] == layer]
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
    return layers


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
