"""`kind: sql`: open a fresh database connection, run a query, read the headroom.

One run does what a starting service does: it opens a new connection
(PostgreSQL through asyncpg, MySQL/MariaDB through aiomysql), runs
``query`` (default ``SELECT 1``, rows read and thrown away) and closes.
The connect is timed in phases, because each points at another layer:

    connect   TCP connect, DNS included (slow: the egress path, e.g. the
              Serverless VPC Access connector, or the Auth Proxy's listener).
              The host is resolved through monitor.net (``ip_family``), its
              addresses dialled in order until one accepts (dial.py)
    tls       PostgreSQL: SSLRequest and handshake; MySQL: the handshake
              after the server greeting (absent when tls.mode is disable)
    startup   the rest until the session is ready: MySQL's greeting, the
              startup message, authentication, the server's parameters
              (slow: the database itself, or the proxy reaching it)
    query     ``query``, sent and all its rows read

Phases go to ``monitor_sql_phase_duration_seconds{phase}``; the whole
connect (connect + tls + startup) to ``monitor_sql_connect_duration_seconds``
(seconds, the network buckets) and to
``monitor_sql_connect_app_timeout_ratio`` (the same time divided by
``app_timeout``, fixed buckets with edges at 0.5, 0.8 and 1.0): the rules
compare the ratio's p99 with 0.8, whatever each probe's app_timeout. A
connect that never completes is observed in both at the time it was given
up (a lower bound), so a hung path raises the percentiles instead of
vanishing.

How the phases are seen: through one hook per driver, fenced in
postgres.py and mysql.py, and the TLS session class of the standard
library (tls.py); tests/integration/sql/test_driver_contract.py pins them.
The password is taken per run (credentials.py: ``password``,
``password_file`` re-read when it changes, or ``auth: {google_iam: true}``),
and the TLS context (with ``tls.cert_file`` / ``key_file``) rebuilt when
its files change.

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

    dns               the host does not resolve, or its lookup did not finish
                      within the timeout (monitor.net's reasons)
    connect_refused   the port refused (or the host was unreachable), or the
                      server refused sessions for now (PostgreSQL 57P03)
    connect_timeout   the connect did not complete within the timeout (no TCP
                      connect, no greeting, no answer to the startup message,
                      no TLS handshake, no end of authentication: the detail
                      names the stage), or it completed but took longer than
                      ``app_timeout``, or so did a burst connect
    auth              wrong password or user, user not allowed from here,
                      unknown database, client certificate missing or refused;
                      no IAM access token; a password_file gone unreadable
    capacity          the server refused for lack of room: PostgreSQL 53300,
                      MySQL 1040 (also max_user_connections), main or burst
    tls               TLS required but not offered, handshake or verification
                      failed, the TLS files (CA, client certificate) unloadable
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
    error             ours: out of descriptors, buffers or memory, or a DNS
                      lookup that never got an executor thread (said so, not
                      observed); or a bug of ours (logged with its traceback)

Secrets: the password goes only to the driver; no DSN is ever built. Details,
traces and logs name host, port, database and user, never the password.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import structlog

from monitor.config.sql import SqlProbeConfig
from monitor.config.types import format_duration
from monitor.metricspecs import (
    SQL_APP_TIMEOUT,
    SQL_CONNECT,
    SQL_CONNECT_RATIO,
    SQL_CONNECTIONS_MAX,
    SQL_CONNECTIONS_USED,
    SQL_PHASES,
    PhaseSpec,
)
from monitor.net.exhaustion import executor_full
from monitor.probes.base import (
    Probe,
    ProbeFailure,
    Reason,
    Result,
    RunContext,
    Sample,
    initial,
    zero,
)
from monitor.probes.sql import mysql, postgres
from monitor.probes.sql.classification import classify, foreign_answer
from monitor.probes.sql.credentials import PasswordSource
from monitor.probes.sql.dial import addresses_of, first_that_accepts
from monitor.probes.sql.session import CURRENT, STAGE_TEXT, Headroom, Marks, Session
from monitor.probes.sql.tls import ContextCache

log = structlog.get_logger("monitor.probes.sql")


# Above this share of connections in use a burst could be what tips the
# server over (docs/architecture.md: the probe must never exhaust it).
BURST_SKIP_RATIO = 0.7
# The server's own statement limit lies this much past the probe's deadline:
# the probe gives up first (and says `timeout`), the server stops the
# abandoned statement soon after.
SERVER_LIMIT_MARGIN = 1.0
# asyncpg's own connect timeout lies this far past ours: our deadline comes first.
DRIVER_TIMEOUT_MARGIN = 5.0


# -- the probe -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    """What every connect of one run uses: the password as of this run
    (re-read file, fresh token) and the TLS context (rebuilt if its files changed)."""

    password: str = field(repr=False)
    context: ssl.SSLContext | None


@dataclass(slots=True)
class BurstConnect:
    outcome: str  # ok | slow | failed | timeout
    seconds: float
    session: Session | None = None
    reason: Reason | None = None
    detail: str = ""


class SqlProbe(Probe[SqlProbeConfig]):
    config: SqlProbeConfig
    phase_metric: ClassVar[PhaseSpec | None] = SQL_PHASES
    # tls joins them when tls.mode is not disable (initial_samples).
    phases: ClassVar[tuple[str, ...]] = ("connect", "startup", "query")

    def __init__(self, config: SqlProbeConfig) -> None:
        super().__init__(config)
        self._password = PasswordSource(config)
        self._tls = ContextCache(config.tls)
        self._told: set[str] = set()  # note kinds already logged once
        # Built now: TLS files that went bad since validation fail the
        # probe's build (a reload keeps the running config), not every run.
        self._ssl_context()

    def initial_samples(self) -> list[Sample]:
        samples = [initial(SQL_APP_TIMEOUT, self.config.app_timeout), zero(SQL_CONNECT),
                   zero(SQL_CONNECT_RATIO)]
        if self.config.tls.mode != "disable":
            samples.append(zero(SQL_PHASES, phase="tls"))
        return samples

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout - ctx.elapsed()
        ctx.set(SQL_APP_TIMEOUT, config.app_timeout)
        ctx.trace(f"connect {config.info_target()} user={config.user} tls={config.tls.mode}"
                  + (" auth=google_iam" if config.auth.google_iam else "")
                  + (" client-cert" if config.tls.cert_file is not None else ""))

        # Before the clock starts: a token fetch is not the database's time.
        login = Login(await self._password.get(), self._ssl_context())
        marks = Marks(loop.time())
        session = await self._timed_connect(ctx, marks, deadline, login)
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
            burst_failure, text = await self._burst(ctx, headroom, deadline, login)
            parts.append(text)
            failure = burst_failure
        summary = ", ".join(p for p in parts if p)
        if failure is not None:
            return ctx.failure(failure[0], f"{failure[1]}; {summary}")
        return ctx.success(summary)

    # -- connect -------------------------------------------------------------------
    async def _timed_connect(self, ctx: RunContext, marks: Marks, deadline: float,
                             login: Login) -> Session:
        """Connect, record its phases and time; raise ProbeFailure when it fails."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                session = await self._connect(marks, deadline, login)
        except TimeoutError:
            if marks.done is None:  # our deadline, not a socket's ETIMEDOUT
                if marks.stage == "dns":  # the lookup (monitor.net's reasons), not observed
                    raise _lookup_timed_out(marks, self.config) from None
                foreign = foreign_answer(marks)
                if foreign:  # it spoke, just not our protocol, and then waited for more
                    raise ProbeFailure("protocol", f"connect failed: {foreign}") from None
                self._observe_connect(ctx, loop.time() - marks.start)
                raise ProbeFailure("connect_timeout", _stage_detail(marks, self.config)) from None
            raise
        except ProbeFailure as failure:  # resolve or TCP, classified by monitor.net
            raise ProbeFailure(failure.reason, f"connect failed: {failure.detail}") from None
        except Exception as exc:
            reason, detail = classify(exc, marks.stage, marks)
            raise ProbeFailure(reason, f"connect failed: {detail}") from None
        for name, seconds in marks.phases().items():
            ctx.phase(name, seconds)
        total = sum(marks.phases().values())
        self._observe_connect(ctx, total)
        ctx.trace(f"connected: {self._connect_summary(marks)}")
        return session

    async def _connect(self, marks: Marks, deadline: float, login: Login) -> Session:
        config = self.config
        password, context = login.password, login.context
        loop = asyncio.get_running_loop()
        # Inside the connect phase, as when the drivers resolved the name.
        addresses = await addresses_of(config.host, config.port, config.ip_family, marks)
        marks.server_name = config.tls.server_name or config.host  # what TLS verifies

        async def attempt(address: str) -> Session:
            if config.driver == "postgres":
                return await postgres.connect(
                    host=address, port=config.port, user=config.user, password=password,
                    database=config.database or config.user, context=context, marks=marks,
                    driver_timeout=deadline - loop.time() + DRIVER_TIMEOUT_MARGIN,
                    statement_limit_ms=max(
                        1, int((deadline - loop.time() + SERVER_LIMIT_MARGIN) * 1000)),
                )
            return await mysql.connect(
                host=address, port=config.port, user=config.user, password=password,
                database=config.database, context=context, marks=marks,
            )

        token = CURRENT.set(marks)  # for the TLS hook (tls.py)
        try:
            return await first_that_accepts(addresses, config.port, marks, attempt)
        finally:
            CURRENT.reset(token)

    def _ssl_context(self) -> ssl.SSLContext | None:
        try:
            return self._tls.get()
        except ProbeFailure as failure:
            if failure.reason != "tls":  # ours (out of descriptors), said so
                raise
            raise ProbeFailure("tls", f"cannot load the TLS files of tls: "
                                      f"{failure.detail}") from None

    def _observe_connect(self, ctx: RunContext, seconds: float) -> None:
        ctx.observe(SQL_CONNECT, seconds)
        ctx.observe(SQL_CONNECT_RATIO, seconds / self.config.app_timeout)

    def _connect_summary(self, marks: Marks) -> str:
        phases = marks.phases()
        inner = ", ".join(f"{name} {_ms(seconds)}" for name, seconds in phases.items())
        return f"connect {_ms(sum(phases.values()))} ({inner})"

    # -- headroom ------------------------------------------------------------------
    def _record_headroom(self, ctx: RunContext, headroom: Headroom) -> str:
        if headroom.max is not None:
            ctx.set(SQL_CONNECTIONS_MAX, headroom.max)
            ctx.facts["connections_max"] = headroom.max
        if headroom.used is not None:
            ctx.set(SQL_CONNECTIONS_USED, headroom.used)
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
                     deadline: float, login: Login) -> tuple[tuple[Reason, str] | None, str]:
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
        tasks = [asyncio.create_task(self._burst_one(deadline, login)) for _ in range(size)]
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
                self._observe_connect(ctx, item.seconds)
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

    async def _burst_one(self, deadline: float, login: Login) -> BurstConnect:
        loop = asyncio.get_running_loop()
        marks = Marks(loop.time())
        try:
            async with asyncio.timeout_at(deadline):
                session = await self._connect(marks, deadline, login)
        except TimeoutError:
            if marks.done is None:
                if marks.stage == "dns":
                    failure = _lookup_timed_out(marks, self.config)
                    return BurstConnect("failed", loop.time() - marks.start,
                                        reason=failure.reason, detail=failure.detail)
                return BurstConnect("timeout", loop.time() - marks.start,
                                    reason="connect_timeout", detail=_stage_detail(marks, None))
            raise
        except ProbeFailure as failure:
            return BurstConnect("failed", loop.time() - marks.start, reason=failure.reason,
                                detail=failure.detail)
        except Exception as exc:
            reason, detail = classify(exc, marks.stage, marks)
            return BurstConnect("failed", loop.time() - marks.start, reason=reason, detail=detail)
        seconds = sum(marks.phases().values())
        outcome = "ok" if seconds <= self.config.app_timeout else "slow"
        return BurstConnect(outcome, seconds, session=session)


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


def _lookup_timed_out(marks: Marks, config: SqlProbeConfig) -> ProbeFailure:
    """The deadline hit the DNS lookup: ``error`` (ours) when it never got a
    thread of the executor, else ``dns``, as for every kind."""
    if marks.lookup is not None and not marks.lookup.started:
        return executor_full(config.host, config.timeout)
    return ProbeFailure("dns", f"resolving {config.host} did not finish within the timeout "
                               f"({format_duration(config.timeout)})")


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
