"""Connect and query times of the sql probe on loopback, per driver and TLS mode.

Starts a throwaway PostgreSQL and MariaDB on 127.0.0.1 (tests/support/
databases.py: scram-sha-256 / mysql_native_password, TLS with a trustme
CA), then runs sequential probe runs with a fresh connection each and
prints, per variant, the median and p90 of each phase the probe reports
(connect = TCP, tls, startup, query) and of the whole connect, plus:

    hooks    the fenced connect of monitor/probes/sql/{postgres,mysql}.py (its
             timing hooks: the loop's create_connection and a forwarding
             protocol for asyncpg, two overrides for aiomysql, the timed TLS
             session of tls.py) against the driver's own connect with the
             same options and a plain SSLContext, both timed around the call,
             alternated connect by connect, plain and TLS: what the hooks
             cost, as a same-run ratio
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
import ssl
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
from monitor.config.sql import SqlTLS
from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.sql import mysql, postgres
from monitor.probes.sql.session import CURRENT, Marks
from monitor.probes.sql.tls import make_ssl_context
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
    return parse_config(text, {"DB_PASSWORD": server.password}, kinds=PROBE_KINDS).probes[0]


async def bare(server: Server, context: ssl.SSLContext | None) -> float:
    """The driver alone, the connect only, the probe's options; seconds."""
    if isinstance(server, PostgresServer):
        started = time.perf_counter()
        conn = await asyncpg.connect(host=server.host, port=server.port, user=server.user,
                                     password=server.password, database=server.database,
                                     ssl=context if context is not None else False,
                                     direct_tls=False, statement_cache_size=0,
                                     server_settings={"application_name": "monitor",
                                                      "statement_timeout": "10000"})
        seconds = time.perf_counter() - started
        await conn.close()
        return seconds
    started = time.perf_counter()
    conn = await aiomysql.connect(host=server.host, port=server.port, user=server.user,
                                  password=server.password, db=server.database,
                                  ssl=context, autocommit=None, local_infile=False,
                                  program_name="monitor")
    seconds = time.perf_counter() - started
    await conn.ensure_closed()
    return seconds


async def hooked(server: Server, context: ssl.SSLContext | None) -> float:
    """The probe's fenced connect (every timing hook on); seconds."""
    marks = Marks(asyncio.get_running_loop().time())
    token = CURRENT.set(marks)
    try:
        started = time.perf_counter()
        if isinstance(server, PostgresServer):
            session: Any = await postgres.connect(
                host=server.host, port=server.port, user=server.user,
                password=server.password, database=server.database, context=context,
                marks=marks, driver_timeout=10.0, statement_limit_ms=10_000)
        else:
            session = await mysql.connect(
                host=server.host, port=server.port, user=server.user,
                password=server.password, database=server.database, context=context,
                marks=marks)
        seconds = time.perf_counter() - started
    finally:
        CURRENT.reset(token)
    await session.close()
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
        # (driver, tls) -> (hooked, bare) connect times
        pairs: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        plain_tls = ssl.create_default_context(cafile=str(ca_file))
        timed_tls = make_ssl_context(SqlTLS(mode="verify-full", ca_file=ca_file))
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
                with_hooks, without = pairs.setdefault((server.driver, mode), ([], []))
                for index in range(runs):
                    tls_on = mode != "disable"
                    first, second = (hooked, bare) if index % 2 else (bare, hooked)
                    for measure in (first, second):
                        seconds = await measure(
                            server, (timed_tls if measure is hooked else plain_tls)
                            if tls_on else None)
                        (with_hooks if measure is hooked else without).append(seconds)
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
        for (driver, mode), (with_hooks, without) in pairs.items():
            hook_median, bare_median = statistics.median(with_hooks), statistics.median(without)
            print(f"{driver:10} {mode:12} connect with the hooks {ms(hook_median)} ms, "
                  f"driver alone {ms(bare_median)} ms: ratio {hook_median / bare_median:.3f}")
        for driver, totals in probe_totals.items():
            print(f"{driver:10} whole run (tls disable) {ms(statistics.median(totals))} ms")
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
