"""The driver contract: what monitor/probes/sql/{postgres,mysql}.py assume of
asyncpg and aiomysql, checked against real servers.

The phases of the sql probe come from hooks into the drivers' connect
sequences (one loop method for asyncpg, two overrides for aiomysql, the TLS
session class for both). A driver update that moves one of them would not
break the connect: it would silently give wrong phase times. These tests
fail instead, naming the hook. They run with every test run, and are the
first thing to run when changing the pins in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import trustme

from monitor.config.sql import SqlTLS
from monitor.probes.sql import mysql, postgres
from monitor.probes.sql.session import CURRENT, DriverContractError, Marks, check_complete
from monitor.probes.sql.tls import make_ssl_context
from tests.support.databases import MariaDBServer, PostgresServer

ROOT = Path(__file__).resolve().parents[3]

# The hooks' events in the order each driver must fire them.
EXPECTED = {
    ("postgres", False): ["tcp_done", "first_bytes", "ready"],
    # tls_start is the end of the TCP connect (the SSLRequest round trip
    # counts as TLS), so the TLS session only marks its end.
    ("postgres", True): ["tcp_done", "first_bytes", "tls_done", "ready"],
    ("mysql", False): ["tcp_done", "greeting", "ready"],
    ("mysql", True): ["tcp_done", "greeting", "tls_start", "tls_done", "ready"],
}


async def _connect(server: PostgresServer | MariaDBServer,
                   tls: SqlTLS | None) -> tuple[Marks, object]:
    loop = asyncio.get_running_loop()
    marks = Marks(loop.time())
    context = make_ssl_context(tls) if tls is not None else None
    token = CURRENT.set(marks)  # as the probe does around every connect
    try:
        if isinstance(server, PostgresServer):
            session: object = await postgres.connect(
                host=server.host, port=server.port, user=server.user,
                password=server.password, database=server.database, context=context,
                marks=marks, driver_timeout=10.0, statement_limit_ms=10_000)
        else:
            session = await mysql.connect(
                host=server.host, port=server.port, user=server.user,
                password=server.password, database=server.database, context=context,
                marks=marks)
    finally:
        CURRENT.reset(token)
    return marks, session


async def _encrypted(session: object) -> bool:
    """Whether the server itself sees the session as TLS."""
    if isinstance(session, postgres.PostgresSession):
        return bool(await session.conn.fetchval(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    assert isinstance(session, mysql.MySQLSession)
    async with session.conn.cursor() as cursor:
        await cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = await cursor.fetchone()
    return bool(row and row[1])


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_hooks_fire_in_order(db: PostgresServer | MariaDBServer, tls: bool,
                                   db_ca: tuple[trustme.CA, Path]) -> None:
    """Every hook of the driver fires once, in the pinned order, at increasing times,
    and a TLS connect is TLS on the server's side too."""
    driver = "postgres" if isinstance(db, PostgresServer) else "mysql"
    options = SqlTLS(mode="verify-full", ca_file=db_ca[1]) if tls else None
    marks, session = await _connect(db, options)
    try:
        assert marks.events == EXPECTED[(driver, tls)], (
            f"{driver} ({'tls' if tls else 'plain'}): the driver's connect sequence changed; "
            f"hooks fired {marks.events}, expected {EXPECTED[(driver, tls)]}")
        stamps = [marks.start, marks.tcp_done, marks.tls_start, marks.tls_done, marks.done]
        present = [t for t in stamps if t is not None]
        assert present == sorted(present)
        assert (marks.tls_done is not None) == tls
        assert await _encrypted(session) == tls
        if driver == "postgres":
            assert marks.first_bytes is not None
            assert marks.first_bytes[:1] == (b"S" if tls else b"R")  # SSLRequest yes / auth
    finally:
        await session.close()  # type: ignore[attr-defined]


def test_a_hook_that_did_not_fire_is_a_loud_error() -> None:
    """A connect that finished without its TLS hook is refused, naming driver and hooks."""
    marks = Marks(0.0, tcp_done=1.0, done=2.0, events=["tcp_done", "ready"])
    with pytest.raises(DriverContractError, match=r"asyncpg 9\.9: .* tls_start, tls_done"):
        check_complete(marks, "asyncpg", "9.9", tls=True)
    check_complete(marks, "asyncpg", "9.9", tls=False)  # plain: nothing missing


@pytest.mark.parametrize("name", ["asyncpg", "aiomysql"])
def test_installed_driver_is_within_the_tested_pin(name: str) -> None:
    """pyproject.toml pins each driver to the minor version these tests ran with."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(rf"{name}\b", d)]
    found = re.fullmatch(rf"{name}>=(\d+)\.(\d+)(?:\.\d+)?,<(\d+)\.(\d+)", spec)
    assert found, f"{spec!r}: pin {name} to one minor version (>=X.Y,<X.Y+1)"
    low = (int(found[1]), int(found[2]))
    high = (int(found[3]), int(found[4]))
    assert high == (low[0], low[1] + 1), f"{spec!r} spans more than one minor version"
    installed = tuple(int(part) for part in version(name).split(".")[:2])
    assert installed == low, f"{name} {version(name)} installed, {spec} tested"


async def test_postgres_query_cancel_goes_around_the_hook(pg: PostgresServer) -> None:
    """asyncpg cancels a timed-out query over a second connection on the loop it was
    given: that one passes the hook (noted, the first connect's marks untouched) and
    the session is usable after."""
    marks, session = await _connect(pg, None)
    assert isinstance(session, postgres.PostgresSession)
    try:
        before = list(marks.events)
        with pytest.raises(TimeoutError):
            await session.conn.execute("SELECT pg_sleep(5)", timeout=0.2)
        assert marks.events == [*before, "passthrough"]
        assert await session.conn.fetchval("SELECT 1") == 1
    finally:
        await session.close()
