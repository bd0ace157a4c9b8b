"""False pages from noise: the shipped page rules over 30 days of simulated
series, evaluated by Prometheus' own rule engine (promtool), next to the rate
the analysis predicts.

A probe at the reference settings (interval 10 s, jitter 0.1, timeout 5 s,
objective 0.99, confirmation runs) fails independently at random: 1 % of its
runs (an http probe answered 503, a sql probe whose connect hangs), or 1 % of
the responses of an lb probe sending 10 requests a run. Its series are
scraped every 15 s and the page rules (config/prometheus/rules: probes.yml,
http.yml, load.yml; the tickets and their 6h windows are left out, they
cannot page and make promtool four times slower) are evaluated every 15 s
over 30 days; a page is a probe's page group starting to fire (Alertmanager
groups pages by vantage and probe). At 2 % the analysis predicts pages one
can count in 30 days, which checks it against the engine.

The analysis (pages per probe-year; failures independent with probability p,
N runs a year, n runs in a window's sampled span):

    MonitorProbeDown     a streak of 4 starting: N (1 - p) p^4
    fast burn (2m)       a failure completing 5 within a 2m window:
                         N p P(Binom(n2 - 1, p) >= 4)
    slow burn (30m)      the same for 12 within 30m: N p P(Binom(n30 - 1, p) >= 11)
    lb responses         5xx are 1 % of 10 per run: the 20x (20 %) and 3x
                         (3 %) burns need 23 and 51 errors; negligible

summed (an upper bound: the episodes overlap). The 95 % upper bound of the
observed rate is the Poisson bound for the count seen.

Run: ``python bench/false_pages.py [--days 30] [--probes 4] [--jobs 2]``
(about 25 minutes on 2 cores with the defaults; needs promtool).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.rulesim import (  # noqa: E402
    PageCount,
    ProbeModel,
    count_pages,
    scrape,
    simulate,
)

YEAR = 365 * 86400
PAGE_RULE_FILES = ("probes.yml", "http.yml", "load.yml")


@dataclass(frozen=True)
class Case:
    name: str
    probe: ProbeModel
    fault: str  # what a failing request gets: "5xx" or "hang"
    noise: float


def page_rules(directory: Path) -> list[Path]:
    """The shipped page rules without tickets and their 6h recordings."""
    written = []
    for name in PAGE_RULE_FILES:
        doc = yaml.safe_load((ROOT / "config" / "prometheus" / "rules" / name).read_text())
        for group in doc["groups"]:
            group["rules"] = [
                rule for rule in group["rules"]
                if not rule.get("record", "").endswith("6h")
                and rule.get("labels", {}).get("severity") != "ticket"
            ]
        path = directory / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        written.append(path)
    return written


def run_case(case: Case, days: float, probes: int, seed: int) -> tuple[PageCount, float]:
    """Pages over ``probes`` probes for ``days``, and the seconds promtool took."""
    rng = random.Random(seed)
    until = days * 86400

    def behaviour(_: float, r: random.Random) -> str:
        return case.fault if r.random() < case.noise else "ok"

    scraped = []
    for index in range(probes):
        probe = ProbeModel(**{**case.probe.__dict__, "name": f"{case.name}-{index}"})
        runs = simulate(probe, behaviour, until, first_start=rng.uniform(0, 10), rng=rng)
        scraped.append(scrape(probe, runs, until=until))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        pages = count_pages(scraped, until=until, rule_files=page_rules(Path(tmp)))
        return pages, time.monotonic() - started


def binomial_tail(n: int, p: float, k: int) -> float:
    """P(Binom(n, p) >= k), summed in logs (n runs into the thousands)."""
    def log_pmf(i: int) -> float:
        return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                + i * math.log(p) + (n - i) * math.log1p(-p))

    return sum(math.exp(log_pmf(i)) for i in range(k, n + 1))


def predicted(case: Case) -> float:
    """Pages per probe-year the analysis predicts (module docstring)."""
    probe, p = case.probe, case.noise
    if probe.requests == 1:  # a failed run per failure; runs after one come early
        spacing = (1 - p) * probe.interval * (1 + probe.jitter / 2) + p * probe.interval / 2
        rate = 1 / spacing
        down = YEAR * rate * (1 - p) * p**4
    else:  # lb: failed runs on responses are judged by the response rules only
        rate = probe.requests / (probe.interval * (1 + probe.jitter / 2))
        down = 0.0
    # The long runs scrape at offset 0 (promtool's grid): a window [t-2m, t]
    # then holds 2m of samples and counts without extrapolation.
    n2, n30 = round(120 * rate), round(1800 * rate)
    # A page needs at least 5 (12) bad events and 20x (3x) the 1 % budget.
    need2 = max(5, math.ceil(0.20 * n2))
    need30 = max(12, math.ceil(0.03 * n30))
    fast = YEAR * rate * p * binomial_tail(n2 - 1, p, need2 - 1)
    slow = YEAR * rate * p * binomial_tail(n30 - 1, p, need30 - 1)
    return down + fast + slow


def poisson_upper(count: int, confidence: float = 0.95) -> float:
    """Upper bound of a Poisson mean having seen ``count`` events."""
    low, high = float(count), float(count) + 10 * math.sqrt(count + 1) + 10
    for _ in range(100):
        mid = (low + high) / 2
        cdf = sum(math.exp(-mid) * mid**i / math.factorial(i) for i in range(count + 1))
        low, high = (mid, high) if cdf > 1 - confidence else (low, mid)
    return high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--probes", type=int, default=4, help="probes per case")
    parser.add_argument("--jobs", type=int, default=2, help="promtool processes at once")
    args = parser.parse_args()
    http = ProbeModel(name="http")
    cases = [
        Case("http", http, "5xx", 0.01),
        Case("sql", ProbeModel(name="sql", kind="sql", layer="database"), "hang", 0.01),
        Case("lb", ProbeModel(name="lb", kind="lb", requests=10, layer="edge"), "5xx", 0.01),
        Case("http-2pct", http, "5xx", 0.02),
    ]
    print(f"{args.days:g} days x {args.probes} probes per case, scrape and evaluation 15s",
          flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_case, case, args.days, args.probes, seed)
                   for seed, case in enumerate(cases)]
        header = (f"{'case':10} {'noise':>6} {'probe-years':>11} {'pages':>6} "
                  f"{'observed/yr':>12} {'95% upper':>10} {'predicted/yr':>13} {'promtool':>9}"
                  "  raised by")
        print(header)
        for case, future in zip(cases, futures, strict=True):
            counted, took = future.result()
            pages = counted.total
            years = args.days * args.probes / 365
            by = ", ".join(f"{name} {n}" for name, n in sorted(counted.per_alert.items()))
            print(f"{case.name:10} {case.noise:>6.0%} {years:>11.2f} {pages:>6} "
                  f"{pages / years:>12.2f} {poisson_upper(pages) / years:>10.2f} "
                  f"{predicted(case):>13.3f} {took:>8.0f}s  {by or '-'}", flush=True)


if __name__ == "__main__":
    main()
