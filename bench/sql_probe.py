"""Connect and query times of the sql probe on loopback, per driver and TLS mode.

Starts a throwaway PostgreSQL and MariaDB on 127.0.0.1 (tests/support/
databases.py: scram-sha-256 / mysql_native_password, TLS with a trustme
CA), then runs sequential probe runs with a fresh connection each and
prints, per variant, the median and p90 of each phase the probe reports
(connect = TCP, tls, startup, query) and of the whole connect, plus:

    bare     the driver's connect alone (asyncpg.connect / aiomysql.connect,
             plain TCP), timed around the call, against the probe's whole
             connect: what the timing hooks (the loop proxy for asyncpg,
             the connection subclass for aiomysql) cost, as a ratio
    run      a whole probe run: connect, query, the two connection-count
             queries, a polite close, the runner's bookkeeping
    burst    one run with ``burst: 20``: its slowest connect

Variants are interleaved over rounds, because this machine is shared and
noisy: read ratios and orders of magnitude, not exact figures.
Run: ``python bench/sql_probe.py [--runs N] [--rounds R]`` (needs the
Debian packages postgresql and mariadb-server).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import structlog
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config.loader import parse_config
from monitor.probes import build_probe
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.databases import (
    MariaDBServer,
    PostgresServer,
    missing_mariadb,
    missing_postgres,
)

Server = PostgresServer | MariaDBServer


def config_for(server: Server, tls: str, ca_file: Path, burst: int | None = None) -> Any:
    fields: dict[str, Any] = {"interval": "30s", "app_timeout": "5s", "timeout": "10s"}
    if tls != "disable":
        fields["tls"] = {"mode": tls, "ca_file": str(ca_file)}
    if burst:
        fields["burst"] = burst
    text = "probes:\n  - " + server.probe_yaml("bench", **fields) + "\n"
    return parse_config(text, {"DB_PASSWORD": server.password}).probes[0]


async def bare(server: Server) -> float:
    """The driver alone, the connect only (plain TCP); seconds."""
    if isinstance(server, PostgresServer):
        started = time.perf_counter()
        conn = await asyncpg.connect(host=server.host, port=server.port, user=server.user,
                                     password=server.password, database=server.database,
                                     ssl=False, statement_cache_size=0)
        seconds = time.perf_counter() - started
        await conn.close()
        return seconds
    started = time.perf_counter()
    conn = await aiomysql.connect(host=server.host, port=server.port, user=server.user,
                                  password=server.password, db=server.database,
                                  autocommit=None)
    seconds = time.perf_counter() - started
    await conn.ensure_closed()
    return seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f}"


async def main(runs: int, rounds: int) -> None:
    for missing in (missing_postgres(), missing_mariadb()):
        if missing:
            sys.exit(missing)
    ca = trustme.CA()
    workdir = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("127.0.0.1")
    tls = (b"".join(b.bytes() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes())
    servers: list[Server] = [PostgresServer(tls=tls).start(), MariaDBServer(tls=tls).start()]
    try:
        variants = [(s, mode) for s in servers for mode in ("disable", "verify-full")]
        phases: dict[tuple[str, str], dict[str, list[float]]] = {}
        bare_times: dict[str, list[float]] = {s.driver: [] for s in servers}
        probe_totals: dict[str, list[float]] = {s.driver: [] for s in servers}
        for _ in range(rounds):
            for server, mode in variants:
                config = config_for(server, mode, ca_file)
                probe = build_probe(config)
                bucket = phases.setdefault((server.driver, mode), {})
                for _ in range(runs):
                    result = await run_once(probe, redactor=Redactor())
                    assert result.ok, result.detail
                    for name, seconds in result.phases.items():
                        bucket.setdefault(name, []).append(seconds)
                    whole = sum(v for k, v in result.phases.items() if k != "query")
                    bucket.setdefault("whole connect", []).append(whole)
                    if mode == "disable":
                        probe_totals[server.driver].append(result.duration)
                if mode == "disable":
                    for _ in range(runs):
                        bare_times[server.driver].append(await bare(server))
        print(f"{runs * rounds} runs per variant, fresh connection each, 127.0.0.1; "
              "milliseconds, median / p90")
        print(f"{'driver':10} {'tls':12} {'phase':14} {'median':>8} {'p90':>8}")
        for (driver, mode), bucket in phases.items():
            for name in ("connect", "tls", "startup", "whole connect", "query"):
                if name in bucket:
                    values = bucket[name]
                    print(f"{driver:10} {mode:12} {name:14} {ms(statistics.median(values))} "
                          f"{ms(pct(values, 0.9))}")
        print()
        for driver in bare_times:
            connect_median = statistics.median(phases[(driver, "disable")]["whole connect"])
            bare_median = statistics.median(bare_times[driver])
            print(f"{driver:10} probe connect {ms(connect_median)} ms vs driver connect alone "
                  f"{ms(bare_median)} ms: ratio {connect_median / bare_median:.2f}; "
                  f"whole run {ms(statistics.median(probe_totals[driver]))} ms")
        print()
        for server in servers:
            config = config_for(server, "disable", ca_file, burst=20)
            result = await run_once(build_probe(config), redactor=Redactor())
            assert result.ok, result.detail
            print(f"{server.driver:10} burst of 20: slowest connect "
                  f"{result.facts['burst']['slowest_seconds'] * 1000:.1f} ms, "
                  f"whole run {result.duration * 1000:.1f} ms")
    finally:
        for server in servers:
            server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="runs per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(args.runs, args.rounds))
