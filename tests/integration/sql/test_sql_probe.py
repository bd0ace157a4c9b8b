"""`kind: sql` against real PostgreSQL and MariaDB servers on 127.0.0.1.

The servers come from conftest.py (session-scoped); tests that change a
server's state (held connections, a lowered max_connections, extra roles)
put it back before they end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import pytest
import trustme
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from monitor.config.loader import parse_config
from monitor.config.sql import SqlProbeConfig
from monitor.metrics import Metrics
from monitor.metricspecs import (
    SQL_APP_TIMEOUT,
    SQL_CONNECT,
    SQL_CONNECT_RATIO,
    SQL_CONNECTIONS_MAX,
    SQL_CONNECTIONS_USED,
    SQL_PHASES,
)
from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Probe, Result, RunContext
from monitor.recorder import Recorder
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.databases import MariaDBServer, PostgresServer
from tests.support.faultproxy import FaultProxy, Faults, client_sockets

# The names the samples carry.
PHASES, CONNECT, CONNECT_RATIO = SQL_PHASES.name, SQL_CONNECT.name, SQL_CONNECT_RATIO.name
APP_TIMEOUT, USED, MAX = SQL_APP_TIMEOUT.name, SQL_CONNECTIONS_USED.name, SQL_CONNECTIONS_MAX.name

Server = PostgresServer | MariaDBServer


def probe_config(server: Server, password: str | None = None, name: str = "db",
                 **fields: Any) -> SqlProbeConfig:
    """A validated probe for ``server``; the password comes in through ${DB_PASSWORD}."""
    fields = {"interval": "10s", "app_timeout": "2s", "timeout": "5s", **fields}
    text = "probes:\n  - " + server.probe_yaml(name, **fields) + "\n"
    config = parse_config(text, {"DB_PASSWORD": password or server.password}, kinds=PROBE_KINDS)
    probe: SqlProbeConfig = config.probes[0]
    return probe


async def run(config: SqlProbeConfig, probe: Probe | None = None, *,
              debug: bool = False) -> Result:
    # An empty redactor: the probe itself must keep secrets out, not the runner.
    return await run_once(probe or build_probe(config), redactor=Redactor(),
                          debug=debug)


def observed(result: Result, metric: str, **labels: str) -> list[float]:
    want = tuple(labels.items())
    return [s.value for s in result.samples
            if s.metric == metric and s.op == "observe" and s.labels == want]


def gauge(result: Result, metric: str) -> float | None:
    values = [s.value for s in result.samples if s.metric == metric and s.op == "set"]
    return values[-1] if values else None


async def connect(server: Server, user: str | None = None,
                  password: str | None = None) -> Any:
    """A plain client connection (the load the tests put on a server)."""
    user, password = user or server.user, password or server.password
    if isinstance(server, PostgresServer):
        return await asyncpg.connect(host=server.host, port=server.port, user=user,
                                     password=password, database=server.database, ssl=False)
    return await aiomysql.connect(host=server.host, port=server.port, user=user,
                                  password=password, db=server.database, autocommit=None)


async def disconnect(conn: Any) -> None:
    if isinstance(conn, asyncpg.Connection):
        await conn.close()
    else:
        await conn.ensure_closed()


def sessions(server: Server, user: str | None = None) -> int:
    """Sessions of ``user`` the server still has (it notices closes asynchronously)."""
    user = user or server.user  # names from the tests themselves, never input
    if isinstance(server, PostgresServer):
        return int(server.admin(
            f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"))  # noqa: S608
    return int(server.admin(
        f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"))  # noqa: S608


async def wait_sessions_gone(server: Server, user: str | None = None,
                             seconds: float = 10.0, baseline: int = 0) -> int:
    """Poll (bounded) until the server has no more than ``baseline`` sessions of
    ``user``; return how many are above it."""
    deadline = time.monotonic() + seconds
    left = sessions(server, user)
    while left > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        left = sessions(server, user)
    return max(0, left - baseline)


@asynccontextmanager
async def held(server: Server, count: int) -> AsyncIterator[list[Any]]:
    """``count`` connections of the monitor user, held open, closed on exit."""
    conns: list[Any] = []
    baseline = sessions(server)
    try:
        for _ in range(count):
            conns.append(await connect(server))
        yield conns
    finally:
        await asyncio.gather(*(disconnect(c) for c in conns), return_exceptions=True)
        assert await wait_sessions_gone(server, baseline=baseline) == 0


# -- success ---------------------------------------------------------------------


async def test_success_records_every_phase(db: Server) -> None:
    """A plain run passes with connect, startup and query timed, and the gauges set."""
    result = await run(probe_config(db))
    assert result.ok, result.detail
    assert client_sockets(db.port) == 0
    assert set(result.phases) == {"connect", "startup", "query"}
    for phase in ("connect", "startup", "query"):
        assert len(observed(result, PHASES, phase=phase)) == 1
    assert len(observed(result, CONNECT)) == 1
    assert gauge(result, APP_TIMEOUT) == 2.0
    expected_max = 47 if isinstance(db, PostgresServer) else 151  # 50 less 3 reserved
    assert gauge(result, MAX) == expected_max
    assert gauge(result, USED) is not None and gauge(result, USED) >= 1  # type: ignore[operator]
    assert f"connections {int(gauge(result, USED) or 0)}/{expected_max}" in result.detail


async def test_tls_verify_full_adds_the_tls_phase(
    db: Server, db_ca: tuple[trustme.CA, Path],
) -> None:
    """verify-full against the server's CA passes and times the TLS phase apart."""
    config = probe_config(db, tls={"mode": "verify-full", "ca_file": str(db_ca[1])})
    result = await run(config)
    assert result.ok, result.detail
    assert set(result.phases) == {"connect", "tls", "startup", "query"}
    assert len(observed(result, PHASES, phase="tls")) == 1
    assert "tls " in result.detail


async def test_tls_server_name_is_checked(db: Server, db_ca: tuple[trustme.CA, Path]) -> None:
    """tls.server_name replaces the host in verification: right name passes, wrong fails."""
    good = probe_config(db, tls={"mode": "verify-full", "ca_file": str(db_ca[1]),
                                 "server_name": "db.test"})
    assert (await run(good)).ok
    bad = probe_config(db, tls={"mode": "verify-full", "ca_file": str(db_ca[1]),
                                "server_name": "other.test"})
    result = await run(bad)
    assert (result.ok, result.reason) == (False, "tls"), result.detail


async def test_a_name_is_dialled_by_address_and_verified_by_name(
    db: Server, db_ca: tuple[trustme.CA, Path],
) -> None:
    """host: localhost is resolved by the probe (monitor.net) and the driver dials
    127.0.0.1, yet TLS verifies the name: the certificate names 127.0.0.1 and db.test,
    not localhost, so verify-full fails with tls; with server_name db.test it passes."""
    ca = str(db_ca[1])
    by_name = probe_config(db, host="localhost", ip_family="ipv4",
                           tls={"mode": "verify-full", "ca_file": ca})
    result = await run(by_name)
    assert (result.ok, result.reason) == (False, "tls"), result.detail
    assert "localhost" in result.detail
    named = probe_config(db, host="localhost", ip_family="ipv4",
                         tls={"mode": "verify-full", "ca_file": ca, "server_name": "db.test"})
    result = await run(named)
    assert result.ok, result.detail
    assert set(result.phases) == {"connect", "tls", "startup", "query"}


async def test_ip_family_picks_the_addresses(db: Server) -> None:
    """ip_family ipv4 reaches the server (listening on 127.0.0.1) by name; an IPv4
    literal with ip_family ipv6 is dns, before anything is dialled."""
    result = await run(probe_config(db, host="localhost", ip_family="ipv4"))
    assert result.ok, result.detail
    result = await run(probe_config(db, ip_family="ipv6"))
    assert (result.ok, result.reason) == (False, "dns"), result.detail
    assert "ip_family is ipv6" in result.detail


async def test_untrusted_certificate_is_tls(db: Server, tmp_path: Path) -> None:
    """A server certificate from another CA fails verify-full with reason tls."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = await run(probe_config(db, tls={"mode": "verify-full", "ca_file": str(other)}))
    assert (result.ok, result.reason) == (False, "tls"), result.detail
    assert client_sockets(db.port) == 0
    assert result.phases.get("connect") is None or "startup" not in result.phases


async def test_tls_required_but_not_offered_is_tls(pg_small: PostgresServer) -> None:
    """tls.mode require against a server without TLS fails with tls, not plain text."""
    result = await run(probe_config(pg_small, tls={"mode": "require"}))
    assert (result.ok, result.reason) == (False, "tls"), result.detail


async def test_query_error_is_assertion(db: Server) -> None:
    """A query the server rejects (no permission) fails with assertion, connect phases kept."""
    query = ("SELECT * FROM pg_authid" if isinstance(db, PostgresServer)
             else "SELECT * FROM mysql.user")
    result = await run(probe_config(db, query=query))
    assert (result.ok, result.reason) == (False, "assertion"), result.detail
    assert result.detail.startswith("query failed:")
    assert "startup" in result.phases and "query" not in result.phases


async def test_slow_query_is_timeout(db: Server) -> None:
    """A query running past the timeout fails with timeout, and nothing stays open."""
    query = "SELECT pg_sleep(30)" if isinstance(db, PostgresServer) else "SELECT SLEEP(30)"
    result = await run(probe_config(db, query=query, app_timeout="500ms", timeout="1s"))
    assert (result.ok, result.reason) == (False, "timeout"), result.detail
    assert "the query did not finish" in result.detail
    assert client_sockets(db.port) == 0
    assert await wait_sessions_gone(db) == 0


# -- refusals --------------------------------------------------------------------


async def test_wrong_password_is_auth(db: Server) -> None:
    """A wrong password fails with reason auth and the server's (password-free) words."""
    result = await run(probe_config(db, password="not-the-password"))
    assert (result.ok, result.reason) == (False, "auth")
    assert "not-the-password" not in result.detail
    assert db.user in result.detail


async def test_unknown_database_is_auth(db: Server) -> None:
    """A database that does not exist (or is not allowed) fails with auth."""
    result = await run(probe_config(db, database="nosuchdb"))
    assert (result.ok, result.reason) == (False, "auth"), result.detail


async def test_stopped_server_is_connect_refused(db: Server) -> None:
    """A stopped server's port refuses: connect_refused."""
    server: Server = (PostgresServer(max_connections=10) if isinstance(db, PostgresServer)
                      else MariaDBServer(max_connections=10))
    try:
        server.start()
        config = probe_config(server)
        assert (await run(config)).ok
        server.stop()
        result = await run(config)
    finally:
        server.cleanup()
    assert (result.ok, result.reason) == (False, "connect_refused"), result.detail
    assert observed(result, CONNECT) == []  # a refusal is not a connect time


async def test_postgres_full_server_is_capacity(pg_small: PostgresServer) -> None:
    """Held connections fill the client slots: gauges show it, then the probe gets 53300."""
    config = probe_config(pg_small, burst=3)
    assert await wait_sessions_gone(pg_small) == 0  # nothing left from earlier tests
    async with held(pg_small, 4):
        result = await run(config)
        assert result.ok, result.detail
        assert (gauge(result, USED), gauge(result, MAX)) == (5, 5)  # 8 less 3 reserved
        assert "burst skipped: 5/5 connections in use" in result.detail
        async with held(pg_small, 1):
            result = await run(config)
    assert (result.ok, result.reason) == (False, "capacity")
    assert "53300" in result.detail


async def test_mysql_full_server_is_capacity(mariadb: MariaDBServer) -> None:
    """With max_connections 10, held connections show in the gauges, then 1040."""
    config = probe_config(mariadb, burst=3)
    mariadb.admin("SET GLOBAL max_connections = 10")
    try:
        async with held(mariadb, 7) as conns:
            # Closed connections (the admin client's, earlier tests') leave
            # Threads_connected a moment later: wait for exactly ours.
            assert await threads_connected(conns[0], settle_at=7) == 7
            result = await run(config)
            assert result.ok, result.detail
            assert (gauge(result, USED), gauge(result, MAX)) == (8, 10)
            assert "burst skipped: 8/10 connections in use, above 70%" in result.detail
            async with held(mariadb, 3):
                result = await run(config)
    finally:
        mariadb.admin("SET GLOBAL max_connections = 151")
    assert (result.ok, result.reason) == (False, "capacity")
    assert "1040" in result.detail


async def threads_connected(conn: Any, settle_at: int, seconds: float = 5.0) -> int:
    """MariaDB's Threads_connected, polled (bounded) until it equals ``settle_at``."""
    deadline = time.monotonic() + seconds
    while True:
        async with conn.cursor() as cursor:
            await cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            value = int((await cursor.fetchone())[1])
        if value == settle_at or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


# -- headroom rights -----------------------------------------------------------------


async def test_postgres_without_rights_still_passes_and_says_so_once(
    pg: PostgresServer,
) -> None:
    """pg_stat_activity revoked: the run passes on connect + query, logs once, says it."""
    pg.admin("CREATE DATABASE norights")
    try:
        pg.admin("REVOKE ALL ON pg_catalog.pg_stat_activity FROM PUBLIC", database="norights")
        config = probe_config(pg, database="norights", burst=2)
        probe = build_probe(config)
        with capture_logs() as logs:
            results = [await run(config, probe) for _ in range(2)]
    finally:
        await wait_sessions_gone(pg)
        pg.admin("DROP DATABASE norights")
    for result in results:
        assert result.ok, result.detail
        assert "cannot read pg_stat_activity" in result.detail
        assert "burst skipped: the connection count is unknown" in result.detail
        assert gauge(result, USED) is None and gauge(result, MAX) == 47
    warnings = [e for e in logs if e["event"] == "sql connection count limited"]
    assert len(warnings) == 1


async def test_postgres_hidden_sessions_are_counted_and_flagged(pg: PostgresServer) -> None:
    """Another user's session, hidden from the monitor user, is still counted, with a note."""
    assert await wait_sessions_gone(pg) == 0  # nothing left from earlier tests
    pg.admin("CREATE ROLE other LOGIN PASSWORD 'other-pw'")
    try:
        other = await connect(pg, user="other", password="other-pw")
        try:
            result = await run(probe_config(pg))
        finally:
            await other.close()
        assert await wait_sessions_gone(pg, "other") == 0
    finally:
        pg.admin("DROP ROLE other")
    assert result.ok, result.detail
    assert gauge(result, USED) == 2
    assert "grant pg_monitor" in result.detail


# -- burst -----------------------------------------------------------------------


async def test_burst_of_20(db: Server) -> None:
    """Twenty concurrent connects pass, are each observed, and are all closed after."""
    result = await run(probe_config(db, burst=20))
    assert client_sockets(db.port) == 0  # closed by the run itself, before it returned
    assert result.ok, result.detail
    assert result.facts["burst"]["size"] == 20
    assert result.facts["burst"]["ok"] == 20
    assert "burst 20/20 ok" in result.detail
    assert len(observed(result, CONNECT)) == 21  # the probe's own connect and the burst
    ratios = observed(result, CONNECT_RATIO)
    assert ratios == [seconds / 2.0 for seconds in observed(result, CONNECT)]
    assert await wait_sessions_gone(db) == 0


async def test_burst_refused_connects_fail_the_run_and_are_closed(db: Server) -> None:
    """A user limited to 5 connections: a burst of 10 fails with capacity, nothing stays open."""
    user, password = "limited", "limited-pw-123"
    if isinstance(db, PostgresServer):
        db.admin(f"CREATE ROLE {user} LOGIN PASSWORD '{password}' CONNECTION LIMIT 5")
    else:
        db.admin(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}' "
                 "WITH MAX_USER_CONNECTIONS 5; "
                 f"GRANT SELECT ON app.* TO '{user}'@'%'")
    try:
        text = "probes:\n  - " + db.probe_yaml(
            "db", user=user, burst=10, interval="10s", app_timeout="2s", timeout="5s") + "\n"
        config = parse_config(text, {"DB_PASSWORD": password}, kinds=PROBE_KINDS).probes[0]
        result = await run(config)
        assert client_sockets(db.port) == 0
        left = await wait_sessions_gone(db, user)
    finally:
        db.admin(f"DROP ROLE {user}" if isinstance(db, PostgresServer)
                 else f"DROP USER '{user}'@'%'")
    assert (result.ok, result.reason) == (False, "capacity"), result.detail
    assert "of 10 connects failed" in result.detail
    assert result.facts["burst"]["failed"] >= 5
    assert left == 0


async def test_connect_slower_than_app_timeout_fails(pg: PostgresServer) -> None:
    """A path that delays the server by 1s fails a 0.5s app_timeout, the time observed."""
    proxy = FaultProxy((pg.host, pg.port), Faults(latency=1.0))
    port = await proxy.start()
    try:
        config = probe_config(pg, port=port, app_timeout="500ms", timeout="4s")
        result = await run(config)
    finally:
        await proxy.close()
    assert (result.ok, result.reason) == (False, "connect_timeout"), result.detail
    assert "longer than app_timeout (500ms)" in result.detail
    (connect_seconds,) = observed(result, CONNECT)
    assert connect_seconds > 0.5
    assert observed(result, CONNECT_RATIO) == [connect_seconds / 0.5]  # > 1: past app_timeout
    assert result.phases["startup"] > result.phases["connect"]  # the wait is past TCP


async def test_burst_stuck_behind_a_full_proxy_times_out(pg: PostgresServer) -> None:
    """A proxy admitting 5 connections holds the other 5 of a burst of 10: connect_timeout."""
    proxy = FaultProxy((pg.host, pg.port), Faults(cap=5, hold=None))
    port = await proxy.start()
    try:
        config = probe_config(pg, port=port, burst=10, app_timeout="1s", timeout="3s")
        result = await run(config)
        assert proxy.open_connections == 0 or await _drained(proxy)
    finally:
        await proxy.close()
    assert (result.ok, result.reason) == (False, "connect_timeout"), result.detail
    assert "5 of 10 connects did not complete" in result.detail
    assert result.facts["burst"]["ok"] == 5
    assert await wait_sessions_gone(pg) == 0


async def test_cancelled_burst_closes_every_connection(pg: PostgresServer) -> None:
    """Cancelling a run mid-burst (the runner's backstop) leaves no socket or task behind."""
    proxy = FaultProxy((pg.host, pg.port), Faults(cap=3, hold=None))
    port = await proxy.start()
    try:
        config = probe_config(pg, port=port, burst=10, app_timeout="2s", timeout="5s")
        probe = build_probe(config)
        tasks_before = asyncio.all_tasks()
        ctx = RunContext(config.name, config.kind)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):  # 3 burst connects done, 7 stuck at the proxy
                await probe.run(ctx)
        assert client_sockets(port) == 0  # at once: nothing waits for the server to notice
        assert await _drained(proxy)  # the proxy's own tasks end as its clients went away
        assert asyncio.all_tasks() <= tasks_before
    finally:
        await proxy.close()
    assert await wait_sessions_gone(pg) == 0


async def _drained(proxy: FaultProxy, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while proxy.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return proxy.open_connections == 0


# -- secrets ---------------------------------------------------------------------


async def test_secrets_stay_out_of_logs_metrics_and_results(db: Server) -> None:
    """The password is nowhere: logs, /metrics text, details, traces, facts, repr."""
    registry = CollectorRegistry()
    recorder = Recorder(Metrics(registry))
    good = probe_config(db, burst=2)
    wrong = probe_config(db, password="wrong-" + db.password, name="db-wrong")
    secrets = {db.password, "wrong-" + db.password}
    results = []
    with capture_logs() as logs:
        for config in (good, wrong):
            probe = build_probe(config)
            recorder.register(config, probe.registration_samples())
            result = await run(config, probe, debug=True)
            recorder.record(result)
            results.append(result)
    assert results[0].ok and results[1].reason == "auth"
    text = generate_latest(registry).decode()
    assert 'monitor_sql_connections_max{kind="sql",probe="db"}' in text
    assert "monitor_sql_connect_duration_seconds_bucket" in text
    haystacks = [text, repr(good), repr(wrong), str(good.model_dump()), repr(logs)]
    for result in results:
        haystacks += [result.detail, *result.trace, repr(result.facts), repr(result.samples)]
    assert results[0].trace  # debug traces were written, and are checked
    for secret in secrets:
        for haystack in haystacks:
            assert secret not in haystack
