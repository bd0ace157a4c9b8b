"""PostgreSQL through asyncpg: every asyncpg-specific workaround lives here.

The one hook: asyncpg opens its socket itself and takes no socket from the
caller, but it takes ``loop=`` (public, documented) and calls
``loop.create_connection`` on it for the TCP connect. :class:`_TimedLoop`
delegates everything to the running loop and notes when that first
``create_connection`` returns (the TCP phase) and the first bytes the
server sends: asyncpg reports a non-PostgreSQL port and a dropped
connection alike as a closed connection, the bytes tell them apart. The
bytes are seen through ``transport.set_protocol`` (public asyncio API) with
a forwarding protocol, so no asyncpg object is patched. The TLS phase is
timed in tls.py.

What this relies on, pinned by tests/integration/sql/test_driver_contract.py
against a real server: the first ``create_connection`` on the given loop is
the session's own TCP connect (later ones are query cancels and are passed
through), and ``connect()`` returns only once the session is ready.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import asyncpg

from monitor.probes.sql.session import Headroom, Marks, check_complete

# A polite close (Terminate) gets this long before the socket is simply closed.
CLOSE_SECONDS = 1.0
VERSION = asyncpg.__version__


class _Sniffer(asyncio.Protocol):
    """Forwards everything to asyncpg's protocol; keeps the first bytes seen."""

    def __init__(self, inner: Any, marks: Marks, transport: asyncio.BaseTransport) -> None:
        self._inner = inner
        self._marks = marks
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        marks = self._marks
        if marks.first_bytes is None:
            marks.first_bytes = bytes(data[:16])
            marks.mark("first_bytes")
        # Seen once: hand the connection straight back to asyncpg.
        self._transport.set_protocol(self._inner)
        self._inner.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _TimedLoop:
    """The running loop, with asyncpg's first TCP connect timed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, marks: Marks, tls: bool) -> None:
        self._loop = loop
        self._marks = marks
        self._tls = tls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_connection(self, protocol_factory: Callable[[], Any],
                                host: Any = None, port: Any = None,
                                **kwargs: Any) -> Any:
        marks = self._marks
        if marks.tcp_done is not None:  # a later connection (a query cancel)
            marks.events.append("passthrough")
            return await self._loop.create_connection(protocol_factory, host, port, **kwargs)
        transport, protocol = await self._loop.create_connection(
            protocol_factory, host, port, **kwargs)
        marks.tcp_done = marks.mark("tcp_done")
        if marks.first_bytes is None:
            transport.set_protocol(_Sniffer(protocol, marks, transport))
        if self._tls:
            # The SSLRequest round trip counts as TLS: it is the price of TLS.
            marks.tls_start = marks.tcp_done
            marks.stage = "tls"
        else:
            marks.stage = "startup"
        return transport, protocol


class PostgresSession:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def limit_statements(self, seconds: float) -> None:
        """Already done: statement_timeout went with the startup packet."""

    async def execute(self, query: str) -> None:
        # The simple-query protocol: no prepare round trip, rows dropped.
        await self.conn.execute(query)

    async def headroom(self) -> Headroom:
        row = await self.conn.fetchrow(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            # reserved_connections exists from PostgreSQL 16 on
            " - coalesce(current_setting('reserved_connections', true)::int, 0)"
        )
        limit = int(row[0])
        try:
            counts = await self.conn.fetchrow(
                # Without pg_read_all_stats (pg_monitor) the sessions of other
                # users show with backend_type NULL; a session attached to a
                # database under a user is a client backend (or, rarely, a
                # parallel or logical-replication worker).
                "SELECT count(*) FILTER (WHERE backend_type = 'client backend'"
                "   OR (backend_type IS NULL AND datid IS NOT NULL"
                "       AND usesysid IS NOT NULL)),"
                " count(*) FILTER (WHERE backend_type IS NULL AND datid IS NOT NULL)"
                " FROM pg_stat_activity"
            )
        except asyncpg.PostgresError as exc:
            return Headroom(None, limit, f"cannot read pg_stat_activity ({pg_text(exc)})",
                            "unreadable")
        if counts[1]:
            return Headroom(int(counts[0]), limit, (
                f"{counts[1]} sessions of other users are hidden from this user: the count"
                " is approximate (grant pg_monitor for an exact one)"), "hidden")
        return Headroom(int(counts[0]), limit)

    async def close(self) -> None:
        await self.conn.close(timeout=CLOSE_SECONDS)

    def abort(self) -> None:
        self.conn.terminate()


async def connect(*, host: str, port: int, user: str, password: str, database: str,
                  context: ssl.SSLContext | None, marks: Marks, driver_timeout: float,
                  statement_limit_ms: int) -> PostgresSession:
    """Open a session, its phases written into ``marks``."""
    loop = asyncio.get_running_loop()
    conn = await asyncpg.connect(
        host=host, port=port, user=user,
        # An empty password, not None: None makes asyncpg read
        # PGPASSWORD and ~/.pgpass behind the config's back.
        password=password,
        database=database,
        ssl=context if context is not None else False,
        direct_tls=False,
        loop=_TimedLoop(loop, marks, context is not None),
        timeout=driver_timeout,  # our own deadline comes first
        statement_cache_size=0,
        server_settings={
            "application_name": "monitor",
            # The server stops the query itself if we give up on it.
            "statement_timeout": str(statement_limit_ms),
        },
    )
    marks.done = marks.mark("ready")
    marks.stage = "ready"
    try:
        check_complete(marks, "asyncpg", VERSION, context is not None)
    except BaseException:
        conn.terminate()
        raise
    return PostgresSession(conn)


def pg_text(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    return f"{state} {exc}" if state else str(exc)
