"""`kind: sql`: open a fresh database connection, run a query, read the headroom.

One run does what a starting service does: it opens a new connection
(PostgreSQL through asyncpg, MySQL/MariaDB through aiomysql), runs
``query`` (default ``SELECT 1``, rows read and thrown away) and closes.
The connect is timed in phases, because each points at another layer:

    connect   TCP connect, DNS included (slow: the egress path, e.g. the
              Serverless VPC Access connector, or the Auth Proxy's listener)
    tls       PostgreSQL: SSLRequest and handshake; MySQL: the handshake
              after the server greeting (absent when tls.mode is disable)
    startup   the rest until the session is ready: MySQL's greeting, the
              startup message, authentication, the server's parameters
              (slow: the database itself, or the proxy reaching it)
    query     ``query``, sent and all its rows read

Phases go to ``monitor_sql_phase_duration_seconds{phase}``; the whole
connect (connect + tls + startup) to ``monitor_sql_connect_duration_seconds``,
whose buckets include 0.5, 0.8 and 1.0 x ``app_timeout``. A connect that
never completes is observed there at the time it was given up (a lower
bound), so a hung path raises the percentiles instead of vanishing.

On the same connection the probe reads the server's connection headroom
(PostgreSQL: max_connections less superuser_reserved_connections and
reserved_connections, against client backends in pg_stat_activity; MySQL:
@@max_connections against Threads_connected) into
``monitor_sql_connections_used`` / ``_max``. A monitoring user without the
rights to read them is told once in the log and in every detail; the run
still passes on connect + query.

With ``burst: N`` it then opens N connections at once (as N instances
starting together would), holds them until all are done, and closes every
one whatever happens. Each connect is observed in the connect histogram.
The burst is skipped, and the detail says so, when the server is already
above 70 % of its connections, when N more would exceed its max, or when
the count is unknown: the probe must never be what exhausts the server.

Failure reasons for this kind:

    dns               the host does not resolve
    connect_refused   the port refused (or the host was unreachable), or the
                      server refused sessions for now (PostgreSQL 57P03)
    connect_timeout   the connect did not complete within the timeout (no TCP
                      connect, no greeting, no answer to the startup message,
                      no TLS handshake, no end of authentication: the detail
                      names the stage), or it completed but took longer than
                      ``app_timeout``, or so did a burst connect
    auth              wrong password or user, user not allowed from here,
                      unknown database
    capacity          the server refused for lack of room: PostgreSQL 53300,
                      MySQL 1040 (also max_user_connections), main or burst
    tls               TLS required but not offered, handshake or verification
                      failed
    connection_reset  the connection was reset, or closed before the session
                      was ready (EOF right after connect: how the Cloud SQL
                      Auth Proxy reports that it cannot reach the instance),
                      or closed during the query
    protocol          the port speaks something else (an HTTP server, any
                      bytes that are not a PostgreSQL or MySQL answer)
    timeout           the query (or the headroom query) did not finish
                      within the timeout. The server gets its own limit 1 s
                      later (PostgreSQL statement_timeout in the startup
                      packet, a session limit on MySQL/MariaDB), so that it
                      stops a statement the probe gave up on
    assertion         the query failed with an SQL error (permission
                      errors included: the login itself worked)
    error             a bug of ours (logged with its traceback)

Secrets: the password goes only to the driver; no DSN is ever built. Details,
traces and logs name host, port, database and user, never the password.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import aiomysql
import asyncpg
import structlog

from monitor.config.sql import SqlProbeConfig, SqlTLS
from monitor.config.types import format_duration
from monitor.probes.base import Probe, ProbeFailure, Reason, Result, RunContext, Sample, zero
from monitor.probes.exhaustion import own_exhaustion

log = structlog.get_logger("monitor.probes.sql")

PHASES = "monitor_sql_phase_duration_seconds"
CONNECT = "monitor_sql_connect_duration_seconds"
APP_TIMEOUT = "monitor_sql_app_timeout_seconds"
USED = "monitor_sql_connections_used"
MAX = "monitor_sql_connections_max"

# Above this share of connections in use a burst could be what tips the
# server over (docs/architecture.md: the probe must never exhaust it).
BURST_SKIP_RATIO = 0.7
# A polite close (Terminate / COM_QUIT) gets this long before the socket is
# simply closed; a server that cannot take a goodbye must not stall the run.
CLOSE_SECONDS = 1.0
# The capability bit of a server that offers TLS (pymysql.constants.CLIENT.SSL).
CLIENT_SSL = 2048
# The server's own statement limit lies this much past the probe's deadline:
# the probe gives up first (and says `timeout`), the server stops the
# abandoned statement soon after.
SERVER_LIMIT_MARGIN = 1.0
# Rows of the query are read in chunks this size and dropped (MySQL).
FETCH_CHUNK = 1000


# -- one connect's timestamps ---------------------------------------------------


@dataclass(slots=True)
class Marks:
    """Event-loop timestamps of one connect; ``stage`` is what it waits for."""

    start: float
    tcp_done: float | None = None
    tls_start: float | None = None
    tls_done: float | None = None
    done: float | None = None
    stage: str = "tcp"  # tcp | greeting | tls | startup | ready
    first_bytes: bytes | None = None  # what the server said first (PostgreSQL)

    def phases(self) -> dict[str, float]:
        """connect / tls / startup of a completed connect."""
        assert self.done is not None and self.tcp_done is not None
        tls = 0.0
        if self.tls_start is not None and self.tls_done is not None:
            tls = self.tls_done - self.tls_start
        found = {"connect": self.tcp_done - self.start}
        if self.tls_done is not None:
            found["tls"] = tls
        found["startup"] = max(0.0, self.done - self.start - found["connect"] - tls)
        return found


STAGE_TEXT = {
    "tcp": "the TCP connect did not complete",
    "greeting": "the server sent no greeting",
    "tls": "the TLS handshake did not complete",
    "startup": "the server did not finish the startup (authentication and session set-up)",
    "ready": "the connect did not complete",
}


# -- the two drivers behind one small interface ----------------------------------


@dataclass(slots=True)
class Headroom:
    used: int | None
    max: int | None
    # Why ``used`` is missing or only approximate (no rights), else "";
    # ``note_kind`` names the case, so that the log says it once per kind.
    note: str = ""
    note_kind: str = ""


class Session(Protocol):
    async def limit_statements(self, seconds: float) -> None: ...

    async def execute(self, query: str) -> None: ...

    async def headroom(self) -> Headroom: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


class _TimedLoop:
    """The running loop, with asyncpg's TCP connect and TLS upgrade timed.

    asyncpg opens its socket itself and takes no socket from the caller, but
    it takes ``loop=``: it calls ``create_connection`` and ``start_tls`` on
    it. Everything else is delegated unchanged to the real loop. The first
    bytes the server sends are kept, to tell a non-PostgreSQL port apart
    from a dropped connection (asyncpg reports both as a closed connection).
    """

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
            return await self._loop.create_connection(protocol_factory, host, port, **kwargs)

        def sniffing_factory() -> Any:
            protocol = protocol_factory()
            receive = protocol.data_received

            def data_received(data: bytes) -> None:
                if marks.first_bytes is None:
                    marks.first_bytes = bytes(data[:16])
                receive(data)

            protocol.data_received = data_received
            return protocol

        result = await self._loop.create_connection(sniffing_factory, host, port, **kwargs)
        marks.tcp_done = self._loop.time()
        if self._tls:
            marks.tls_start = marks.tcp_done  # the SSLRequest round trip counts as TLS
            marks.stage = "tls"
        else:
            marks.stage = "startup"
        return result

    async def start_tls(self, *args: Any, **kwargs: Any) -> Any:
        result = await self._loop.start_tls(*args, **kwargs)
        self._marks.tls_done = self._loop.time()
        self._marks.stage = "startup"
        return result


class _PostgresSession:
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
            return Headroom(None, limit, f"cannot read pg_stat_activity ({_pg_text(exc)})",
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


class _TimedMySQL(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection with its connect stages timed.

    aiomysql opens the socket, reads the greeting, and upgrades to TLS inside
    ``_request_authentication``: the first packet written there is the
    SSLRequest, the second (after the handshake) the login.
    """

    marks: Marks
    _auth_writes: int = -1

    async def _get_server_information(self) -> None:
        marks = self.marks
        marks.tcp_done = self._loop_time()
        marks.stage = "greeting"
        try:
            await super()._get_server_information()
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
            raise _NotTheProtocol(f"the greeting is not MySQL's ({type(exc).__name__})") from exc
        if self.protocol_version != 10:
            raise _NotTheProtocol(
                f"the greeting is not MySQL's (protocol version {self.protocol_version})"
            )
        marks.stage = "startup"

    async def _request_authentication(self) -> None:
        if self._ssl_context is not None and not self.server_capabilities & CLIENT_SSL:
            # aiomysql would silently carry on in plain text.
            raise _TlsNotOffered("the server does not offer TLS")
        self._auth_writes = 0
        try:
            await super()._request_authentication()
        finally:
            self._auth_writes = -1

    def write_packet(self, payload: bytes) -> None:
        if self._auth_writes >= 0 and self._ssl_context is not None:
            now = self._loop_time()
            if self._auth_writes == 0:
                self.marks.tls_start = now
                self.marks.stage = "tls"
            elif self._auth_writes == 1:
                self.marks.tls_done = now
                self.marks.stage = "startup"
            self._auth_writes += 1
        super().write_packet(payload)

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()


class _MySQLSession:
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
                return Headroom(None, limit, f"cannot read Threads_connected ({_my_text(exc)})",
                                "unreadable")
        if row is None:
            return Headroom(None, limit, "the server reports no Threads_connected", "unreadable")
        return Headroom(int(row[1]), limit)

    async def close(self) -> None:
        await asyncio.wait_for(self.conn.ensure_closed(), CLOSE_SECONDS)

    def abort(self) -> None:
        self.conn.close()


class _NotTheProtocol(Exception):
    """The peer answered, but not as the database would."""


class _TlsNotOffered(Exception):
    pass


# -- the probe -------------------------------------------------------------------


@dataclass(slots=True)
class BurstConnect:
    outcome: str  # ok | slow | failed | timeout
    seconds: float
    session: Session | None = None
    reason: Reason | None = None
    detail: str = ""


class SqlProbe(Probe[SqlProbeConfig]):
    config: SqlProbeConfig
    phase_metric: ClassVar[str | None] = PHASES
    # tls joins them when tls.mode is not disable (initial_samples).
    phases: ClassVar[tuple[str, ...]] = ("connect", "startup", "query")

    def __init__(self, config: SqlProbeConfig) -> None:
        super().__init__(config)
        self._password = config.password_value() or ""
        self._ssl: ssl.SSLContext | None = None
        self._told: set[str] = set()  # note kinds already logged once

    def initial_samples(self) -> list[Sample]:
        samples = [Sample(APP_TIMEOUT, (), self.config.app_timeout, "set"), zero(CONNECT)]
        if self.config.tls.mode != "disable":
            samples.append(zero(PHASES, phase="tls"))
        return samples

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout - ctx.elapsed()
        ctx.set(APP_TIMEOUT, config.app_timeout)
        ctx.trace(f"connect {config.info_target()} user={config.user} tls={config.tls.mode}")

        marks = Marks(loop.time())
        session = await self._timed_connect(ctx, marks, deadline)
        connect_seconds = sum(marks.phases().values())
        failure: tuple[Reason, str] | None = None
        try:
            stage = "query"
            async with asyncio.timeout_at(deadline):
                await session.limit_statements(deadline - loop.time() + SERVER_LIMIT_MARGIN)
                started = loop.time()
                await session.execute(config.query)
                ctx.phase("query", loop.time() - started)
                ctx.trace(f"query done in {_ms(loop.time() - started)}")
                stage = "headroom"
                headroom = await session.headroom()
        except TimeoutError:
            await _abort(session)
            what = "the query" if stage == "query" else "the connection-count query"
            raise ProbeFailure("timeout", f"{what} did not finish within the timeout "
                               f"({format_duration(config.timeout)})") from None
        except Exception as exc:
            await _abort(session)
            reason, detail = classify(exc, "query", marks)
            what = "query" if stage == "query" else "connection-count query"
            raise ProbeFailure(reason, f"{what} failed: {detail}") from None
        except BaseException:  # cancelled: close and go, without waiting
            session.abort()
            raise
        else:
            await _close(session)

        parts = [self._connect_summary(marks), f"query {_ms(ctx.phases['query'])}"]
        parts.append(self._record_headroom(ctx, headroom))
        if connect_seconds > config.app_timeout:
            failure = ("connect_timeout",
                       f"connect took {connect_seconds:.2f}s, longer than app_timeout "
                       f"({format_duration(config.app_timeout)})")
        elif config.burst:
            burst_failure, text = await self._burst(ctx, headroom, deadline)
            parts.append(text)
            failure = burst_failure
        summary = ", ".join(p for p in parts if p)
        if failure is not None:
            return ctx.failure(failure[0], f"{failure[1]}; {summary}")
        return ctx.success(summary)

    # -- connect -------------------------------------------------------------------
    async def _timed_connect(self, ctx: RunContext, marks: Marks, deadline: float) -> Session:
        """Connect, record its phases and time; raise ProbeFailure when it fails."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                session = await self._connect(marks, deadline)
        except TimeoutError:
            if marks.done is None:  # our deadline, not a socket's ETIMEDOUT
                foreign = _foreign_answer(marks)
                if foreign:  # it spoke, just not our protocol, and then waited for more
                    raise ProbeFailure("protocol", f"connect failed: {foreign}") from None
                ctx.observe(CONNECT, loop.time() - marks.start)
                raise ProbeFailure("connect_timeout", _stage_detail(marks, self.config)) from None
            raise
        except Exception as exc:
            reason, detail = classify(exc, marks.stage, marks)
            raise ProbeFailure(reason, f"connect failed: {detail}") from None
        for name, seconds in marks.phases().items():
            ctx.phase(name, seconds)
        total = sum(marks.phases().values())
        ctx.observe(CONNECT, total)
        ctx.trace(f"connected: {self._connect_summary(marks)}")
        return session

    async def _connect(self, marks: Marks, deadline: float) -> Session:
        config = self.config
        context = self._ssl_context()
        loop = asyncio.get_running_loop()
        if config.driver == "postgres":
            limit_ms = max(1, int((deadline - loop.time() + SERVER_LIMIT_MARGIN) * 1000))
            conn = await asyncpg.connect(
                host=config.host, port=config.port, user=config.user,
                # An empty password, not None: None makes asyncpg read
                # PGPASSWORD and ~/.pgpass behind the config's back.
                password=self._password,
                database=config.database or config.user,
                ssl=context if context is not None else False,
                direct_tls=False,
                loop=_TimedLoop(loop, marks, context is not None),
                timeout=deadline - loop.time() + 5,  # our own deadline comes first
                statement_cache_size=0,
                server_settings={
                    "application_name": "monitor",
                    # The server stops the query itself if we give up on it.
                    "statement_timeout": str(limit_ms),
                },
            )
            marks.done = loop.time()
            marks.stage = "ready"
            return _PostgresSession(conn)
        conn = _TimedMySQL(
            host=config.host, port=config.port, user=config.user, password=self._password,
            db=config.database, ssl=context, autocommit=None, local_infile=False,
            program_name="monitor",
        )
        conn.marks = marks
        try:
            await conn._connect()  # what aiomysql.connect() awaits
        except BaseException:
            conn.close()  # aiomysql leaves the socket open on cancellation
            raise
        marks.done = loop.time()
        marks.stage = "ready"
        return _MySQLSession(conn)

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls.mode == "disable":
            return None
        if self._ssl is None:
            try:
                self._ssl = make_ssl_context(tls)
            except (OSError, ssl.SSLError) as exc:
                raise ProbeFailure("tls", f"cannot load tls.ca_file: {exc}") from None
        return self._ssl

    def _connect_summary(self, marks: Marks) -> str:
        phases = marks.phases()
        inner = ", ".join(f"{name} {_ms(seconds)}" for name, seconds in phases.items())
        return f"connect {_ms(sum(phases.values()))} ({inner})"

    # -- headroom ------------------------------------------------------------------
    def _record_headroom(self, ctx: RunContext, headroom: Headroom) -> str:
        if headroom.max is not None:
            ctx.set(MAX, headroom.max)
            ctx.facts["connections_max"] = headroom.max
        if headroom.used is not None:
            ctx.set(USED, headroom.used)
            ctx.facts["connections_used"] = headroom.used
        if headroom.note:
            ctx.facts["connections_note"] = headroom.note
            if headroom.note_kind not in self._told:
                self._told.add(headroom.note_kind)
                log.warning("sql connection count limited", note=headroom.note)
        if headroom.used is None:
            return f"connections unknown: {headroom.note}"
        text = f"connections {headroom.used}/{headroom.max}"
        return f"{text} ({headroom.note})" if headroom.note else text

    # -- burst ---------------------------------------------------------------------
    async def _burst(self, ctx: RunContext, headroom: Headroom,
                     deadline: float) -> tuple[tuple[Reason, str] | None, str]:
        """Open ``burst`` connections at once; (failure or None, summary)."""
        size = self.config.burst or 0
        used, limit = headroom.used, headroom.max
        if used is None or not limit:
            return None, "burst skipped: the connection count is unknown"
        if used / limit > BURST_SKIP_RATIO:
            return None, (f"burst skipped: {used}/{limit} connections in use, above "
                          f"{BURST_SKIP_RATIO:.0%}")
        if used + size > limit:
            return None, f"burst skipped: {size} more connections would exceed {limit}"
        ctx.trace(f"burst of {size}")
        tasks = [asyncio.create_task(self._burst_one(deadline)) for _ in range(size)]
        try:
            await asyncio.wait(tasks)
        finally:
            for task in tasks:
                task.cancel()  # no-op on finished ones
            done = await asyncio.gather(*tasks, return_exceptions=True)
            sessions = [d.session for d in done if isinstance(d, BurstConnect) and d.session]
            await asyncio.gather(*(_close(s) for s in sessions), return_exceptions=True)
        results = [d for d in done if isinstance(d, BurstConnect)]
        for index, item in enumerate(results):
            ctx.trace(f"burst[{index}] {item.outcome} {_ms(item.seconds)} {item.detail}".rstrip())
            if item.outcome != "failed":
                ctx.observe(CONNECT, item.seconds)
        counts = Counter(item.outcome for item in results)
        slowest = max((r.seconds for r in results if r.outcome != "failed"), default=0.0)
        ctx.facts["burst"] = {"size": size, **counts, "slowest_seconds": round(slowest, 4)}
        summary = f"burst {counts['ok']}/{size} ok, slowest {_ms(slowest)}"
        failed = [r for r in results if r.outcome == "failed"]
        if failed:
            reason, _ = Counter(r.reason for r in failed).most_common(1)[0]
            example = next(r.detail for r in failed if r.reason == reason)
            assert reason is not None
            return (reason, f"burst: {len(failed)} of {size} connects failed ({example})"), summary
        if counts["timeout"]:
            return ("connect_timeout", f"burst: {counts['timeout']} of {size} connects did not "
                    "complete within the timeout"), summary
        if counts["slow"]:
            return ("connect_timeout", f"burst: {counts['slow']} of {size} connects took longer "
                    f"than app_timeout ({format_duration(self.config.app_timeout)})"), summary
        return None, summary

    async def _burst_one(self, deadline: float) -> BurstConnect:
        loop = asyncio.get_running_loop()
        marks = Marks(loop.time())
        try:
            async with asyncio.timeout_at(deadline):
                session = await self._connect(marks, deadline)
        except TimeoutError:
            if marks.done is None:
                return BurstConnect("timeout", loop.time() - marks.start,
                                    reason="connect_timeout", detail=_stage_detail(marks, None))
            raise
        except Exception as exc:
            reason, detail = classify(exc, marks.stage, marks)
            return BurstConnect("failed", loop.time() - marks.start, reason=reason, detail=detail)
        seconds = sum(marks.phases().values())
        outcome = "ok" if seconds <= self.config.app_timeout else "slow"
        return BurstConnect(outcome, seconds, session=session)


# -- helpers ---------------------------------------------------------------------


def make_ssl_context(tls: SqlTLS) -> ssl.SSLContext:
    if tls.mode == "require":
        # libpq's sslmode=require: encrypted, the certificate is not checked.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    named = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    named.server_name = tls.server_name
    if tls.ca_file is not None:
        named.load_verify_locations(cafile=str(tls.ca_file))
    else:
        named.load_default_certs()
    return named


class _NamedContext(ssl.SSLContext):
    """Checks (and sends as SNI) ``server_name`` instead of the host.

    Both drivers pass the configured host as the TLS server name; a server
    reached by IP (Cloud SQL's private IP) has a certificate for a name.
    """

    server_name: str | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side,
                                self.server_name or server_hostname, session)


async def _close(session: Session) -> None:
    """Say goodbye if the server takes it quickly; close the socket anyway."""
    try:
        await session.close()
    except Exception:  # a timeout or a dead connection: nothing left to be polite to
        session.abort()
    except BaseException:
        session.abort()
        raise


async def _abort(session: Session) -> None:
    """Close the socket now; the transport lets it go on the next loop turn."""
    session.abort()
    await asyncio.sleep(0)


def _stage_detail(marks: Marks, config: SqlProbeConfig | None) -> str:
    text = STAGE_TEXT.get(marks.stage, STAGE_TEXT["ready"])
    if config is None:
        return text
    if marks.stage == "greeting":
        text += (" (a MySQL server speaks first; a port that waits for the client,"
                 " such as an HTTP server, looks the same)")
    return f"{text} within the timeout ({format_duration(config.timeout)})"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f}s"


def _pg_text(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    return f"{state} {exc}" if state else str(exc)


def _my_text(exc: BaseException) -> str:
    args: tuple[Any, ...] = exc.args
    if len(args) >= 2:
        return f"{args[0]} {args[1]}"
    return str(exc) or type(exc).__name__


# SQLSTATEs and MySQL error numbers -> reasons.
_PG_STATES: dict[str, Reason] = {
    "28P01": "auth", "28000": "auth", "3D000": "auth", "42501": "auth",
    "53300": "capacity",
    "57P03": "connect_refused",
    "57014": "timeout",
    "57P01": "connection_reset", "57P02": "connection_reset",
}
_MY_CODES: dict[int, Reason] = {
    1044: "auth", 1045: "auth", 1049: "auth", 1130: "auth", 1251: "auth", 1698: "auth",
    1040: "capacity", 1203: "capacity", 1226: "capacity",
    2006: "connection_reset", 2013: "connection_reset", 1053: "connection_reset",
    1927: "connection_reset",
    3024: "timeout", 1969: "timeout",
}
_CONNECT_STAGES = frozenset({"tcp", "greeting", "tls", "startup"})
# What a PostgreSQL server may answer first: an authentication request, an
# error, NegotiateProtocolVersion; to an SSLRequest: S or N.
_PG_FIRST_BYTES = frozenset(b"REvSN")


def classify(exc: BaseException, stage: str, marks: Marks) -> tuple[Reason, str]:
    """A driver's exception -> (reason, detail). Unknown ones are re-raised as bugs."""
    own = own_exhaustion(exc)
    if own is not None:
        return own.reason, own.detail
    in_connect = stage in _CONNECT_STAGES
    foreign = _foreign_answer(marks) if in_connect else ""
    if foreign:
        return "protocol", foreign
    chain = _chain(exc)
    for item in chain:
        reason = _reason_of(item, in_connect)
        if reason is not None:
            return reason, _describe(item, reason, stage, marks)
    raise exc


def _foreign_answer(marks: Marks) -> str:
    """What the server said first, if it is not PostgreSQL (MySQL: checked on parse)."""
    first = marks.first_bytes
    if first and first[0] not in _PG_FIRST_BYTES:
        return f"the server does not speak PostgreSQL: it answered {first!r}"
    return ""


def _reason_of(exc: BaseException, in_connect: bool) -> Reason | None:
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        if state in _PG_STATES:
            reason = _PG_STATES[state]
            # "permission denied" in a query is the query's failure, not a login's.
            return "assertion" if reason == "auth" and not in_connect else reason
        if state.startswith("08"):
            return "connection_reset"
        if state.startswith("53"):
            return "capacity"
        return "connect_refused" if in_connect else "assertion"
    if isinstance(exc, _NotTheProtocol):
        return "protocol"
    if isinstance(exc, _TlsNotOffered | ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, aiomysql.InternalError) and "sequence number" in str(exc):
        return "protocol"
    if isinstance(exc, aiomysql.MySQLError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        if code in _MY_CODES:
            reason = _MY_CODES[code]
            return "assertion" if reason == "auth" and not in_connect else reason
        if code == 2003:
            return None  # "can't connect": the cause says why
        return "connect_refused" if in_connect else "assertion"
    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError):
        return "connection_reset"
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        return "protocol" if in_connect else "connection_reset"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, ConnectionError) and "SSL" in str(exc):
        return "tls"  # asyncpg: "rejected SSL upgrade", an error during the SSL exchange
    if isinstance(exc, ConnectionError | asyncio.IncompleteReadError | EOFError):
        return "connection_reset"
    if isinstance(exc, TimeoutError):
        return "connect_timeout" if in_connect else "timeout"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "connect_refused"
        return "connect_refused" if in_connect else "connection_reset"
    return None


def _describe(exc: BaseException, reason: Reason, stage: str, marks: Marks) -> str:
    if isinstance(exc, asyncpg.PostgresError):
        text = _pg_text(exc)
    elif isinstance(exc, aiomysql.MySQLError):
        text = _my_text(exc)
    else:
        text = str(exc) or type(exc).__name__
    if reason == "connection_reset" and stage in _CONNECT_STAGES:
        said = "before the server said anything" if not marks.first_bytes and stage in (
            "startup", "greeting") else "before the session was ready"
        text = (f"the connection was closed {said} ({text}); the Cloud SQL Auth Proxy "
                "does this when it cannot reach the instance")
    return text


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and item not in found and len(found) < 6:
        found.append(item)
        item = item.__cause__ or item.__context__
    return found
