"""Time to page and to resolved, over every alignment of runs, scrapes and
evaluations: the detection table of docs/alerting.md and the README.

The shipped rules are evaluated by promtool over modelled probe runs
(tests/support/rulesim.py: the daemon's schedule with jitter and
confirmation runs, scrapes at a random offset, Alertmanager's group_wait
and group_interval). Reference settings: probe interval 10 s, timeout 5 s,
objective 0.99; scrape and evaluation every 15 s; group_wait 10 s,
group_interval 15 s on the page route. Each row runs ``--alignments``
copies of the probe, each with its own run phase, scrape offset and fault
time. Times are simulated seconds, not measured ones: the same on any
machine (tests/unit/test_detection.py pins the bounds; the end-to-end test
measures one alignment with real processes).

Run: ``python bench/detection.py [--alignments 100]`` (a few minutes; needs promtool).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.rulesim import (  # noqa: E402
    Fault,
    ProbeModel,
    alternating,
    always,
    scenario,
    share,
)

HTTP = ProbeModel(name="api")
SQL = ProbeModel(name="db", kind="sql", layer="database")
LB = ProbeModel(name="edge", kind="lb", layer="edge", requests=10)

# (row, probe, fault, seconds of fault, seconds evaluated)
ROWS: list[tuple[str, ProbeModel, Fault, float | None, float]] = [
    ("full outage: http endpoint answers 503", HTTP, always("5xx"), 180, 420),
    ("full outage: http endpoint hangs", HTTP, always("hang"), 180, 420),
    ("full outage: database path hangs (sql)", SQL, always("hang"), 180, 420),
    ("full outage: database refuses (sql)", SQL, always("refused"), 180, 420),
    ("full outage: lb, every response 503", LB, always("5xx"), 180, 420),
    ("full outage: lb, every request hangs", LB, always("hang"), 180, 420),
    ("50 % of responses 5xx: lb (10 requests)", LB, share("5xx", 0.5), 300, 540),
    ("50 % of responses 5xx: http (1 request)", HTTP, share("5xx", 0.5), 300, 600),
    ("10 % of responses 5xx: lb (10 requests)", LB, share("5xx", 0.1), 1080, 1320),
    ("10 % of responses 5xx: http (1 request)", HTTP, share("5xx", 0.1), 1800, 2040),
    ("flapping: every other sql run hangs", SQL, alternating("hang"), 900, 1140),
    ("one failed http run", HTTP, always("5xx"), 5, 600),
    ("one lb run with ten 503s", LB, always("5xx"), 5, 600),
]


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.0f} {max(values):6.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alignments", type=int, default=100)
    args = parser.parse_args()
    print(f"{'fault':42} {'paged':>7} {'page med':>8} {'max':>6} {'pages':>5} "
          f"{'resolve med':>11} {'max':>6}")
    for row, probe, fault, length, duration in ROWS:
        seen = scenario(probe, fault, duration=duration, recover_after=length,
                        alignments=args.alignments)
        paged = [s.time_to_page for s in seen if s.time_to_page is not None]
        resolved = [s.time_to_resolve for s in seen if s.time_to_resolve is not None]
        most_pages = max(len(s.pages) for s in seen)
        print(f"{row:42} {len(paged):>3}/{len(seen):<3} {fmt(paged):>15} {most_pages:>5} "
              f"{fmt(resolved):>18}", flush=True)


if __name__ == "__main__":
    main()
