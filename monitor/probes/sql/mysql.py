"""MySQL and MariaDB through aiomysql: every aiomysql-specific workaround lives here.

aiomysql has no connect hooks, takes no socket and opens its connection on
the running loop (not on a ``loop=`` argument), so the TCP phase can only be
seen from inside its connect sequence. ``_connect`` (what the public
``aiomysql.connect()`` awaits) runs, in this order: the TCP connect, then
``_get_server_information`` (reads the greeting), then
``_request_authentication`` (the SSLRequest and TLS handshake if asked for,
then the login). Two overrides, no more:

- ``_get_server_information``: its start is the end of the TCP connect; a
  greeting that does not parse, or is not protocol 10, is another protocol
  (aiomysql would report an IndexError or a bare "can't connect").
- ``_request_authentication``: refuses to go on when TLS was asked for and
  the server does not offer it (aiomysql would log in in plain text).

The TLS phase is timed in tls.py (the standard library's
``sslobject_class``), which replaced counting ``write_packet`` calls.

What this relies on is pinned by tests/integration/sql/test_driver_contract.py
against a real MariaDB: the hooks fire in the order
tcp_done, greeting, [tls_start, tls_done], ready.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from typing import Any

import aiomysql

from monitor.probes.sql.session import (
    Headroom,
    Marks,
    NotTheProtocol,
    TlsNotOffered,
    check_complete,
)

# The capability bit of a server that offers TLS (pymysql.constants.CLIENT.SSL).
CLIENT_SSL = 2048
# A polite close (COM_QUIT) gets this long before the socket is simply closed.
CLOSE_SECONDS = 1.0
# Rows of the query are read in chunks this size and dropped.
FETCH_CHUNK = 1000
VERSION = aiomysql.__version__


class _TimedMySQL(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection with its connect stages timed."""

    marks: Marks

    async def _get_server_information(self) -> None:
        marks = self.marks
        marks.tcp_done = marks.mark("tcp_done")
        marks.stage = "greeting"
        try:
            await super()._get_server_information()
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
            raise NotTheProtocol(f"the greeting is not MySQL's ({type(exc).__name__})") from exc
        if self.protocol_version != 10:
            raise NotTheProtocol(
                f"the greeting is not MySQL's (protocol version {self.protocol_version})"
            )
        marks.mark("greeting")
        marks.stage = "startup"

    async def _request_authentication(self) -> None:
        if self._ssl_context is not None and not self.server_capabilities & CLIENT_SSL:
            raise TlsNotOffered("the server does not offer TLS")
        await super()._request_authentication()


class MySQLSession:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def limit_statements(self, seconds: float) -> None:
        """Have the server stop a statement the probe gives up on.

        MySQL notices a closed connection only when it next writes, so an
        abandoned query would run on. MariaDB and MySQL name the limit
        differently (MySQL's covers SELECT only); a server that knows
        neither keeps running without one.
        """
        if "MariaDB" in (self.conn.get_server_info() or ""):
            statement = f"SET SESSION max_statement_time = {max(seconds, 0.001):.3f}"
        else:
            statement = f"SET SESSION max_execution_time = {max(1, int(seconds * 1000))}"
        async with self.conn.cursor() as cursor:
            try:
                await cursor.execute(statement)
            except aiomysql.MySQLError as exc:
                code = exc.args[0] if exc.args else 0
                if code != 1193:  # unknown system variable: an older server
                    raise

    async def execute(self, query: str) -> None:
        # Unbuffered: rows are read in chunks and dropped, never all held.
        async with self.conn.cursor(aiomysql.SSCursor) as cursor:
            await cursor.execute(query)
            while await cursor.fetchmany(FETCH_CHUNK):
                pass

    async def headroom(self) -> Headroom:
        async with self.conn.cursor() as cursor:
            await cursor.execute("SELECT @@max_connections")
            limit = int((await cursor.fetchone())[0])
            try:
                await cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
                row = await cursor.fetchone()
            except aiomysql.MySQLError as exc:
                return Headroom(None, limit, f"cannot read Threads_connected ({my_text(exc)})",
                                "unreadable")
        if row is None:
            return Headroom(None, limit, "the server reports no Threads_connected", "unreadable")
        return Headroom(int(row[1]), limit)

    async def close(self) -> None:
        await asyncio.wait_for(self.conn.ensure_closed(), CLOSE_SECONDS)

    def abort(self) -> None:
        self.conn.close()


async def connect(*, host: str, port: int, user: str, password: str, database: str | None,
                  context: ssl.SSLContext | None, marks: Marks) -> MySQLSession:
    """Open a session, its phases written into ``marks``."""
    conn = _TimedMySQL(
        host=host, port=port, user=user, password=password,
        db=database, ssl=context, autocommit=None, local_infile=False,
        program_name="monitor",
    )
    conn.marks = marks
    try:
        await conn._connect()  # what aiomysql.connect() awaits
        marks.done = marks.mark("ready")
        marks.stage = "ready"
        check_complete(marks, "aiomysql", VERSION, context is not None)
    except BaseException:
        conn.close()  # aiomysql leaves the socket open on cancellation
        raise
    return MySQLSession(conn)


def my_text(exc: BaseException) -> str:
    args: tuple[Any, ...] = exc.args
    if len(args) >= 2:
        return f"{args[0]} {args[1]}"
    return str(exc) or type(exc).__name__
