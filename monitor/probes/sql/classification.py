"""A driver's exception -> (reason, detail), for both drivers.

The reasons are the ones listed in probe.py's docstring. What the drivers
say (SQLSTATEs, MySQL error numbers, their own exceptions) is judged here;
what the network did (an OSError, a TLS error, EOF) goes to the classifier
of every kind, :func:`monitor.net.errors.reason_of`, with sql's stage as
its stage, so that one condition gives one reason whatever the kind. The
one difference is sql's own, documented: until the session is ready the
probe is connecting, so a timeout there is ``connect_timeout``, and a TLS
error before then is ``tls`` (a TLS 1.3 server's refusal of a client
certificate arrives after the handshake). The resolve and the TCP connect
are classified by monitor.net directly (dial.py).

An exception this module does not know is re-raised: the runner logs it
as ``error`` (a bug of ours), rather than guessing. Public names
(``classify``, ``foreign_answer``) are kept stable: other kinds' reason
tests call them.
"""

from __future__ import annotations

import ssl

import aiomysql
import asyncpg

from monitor.net.errors import Stage, reason_of
from monitor.net.exhaustion import own_exhaustion
from monitor.probes.base import Reason
from monitor.probes.sql.mysql import my_text
from monitor.probes.sql.postgres import pg_text
from monitor.probes.sql.session import (
    DriverContractError,
    Marks,
    NotTheProtocol,
    TlsNotOffered,
)

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
    if isinstance(exc, DriverContractError):
        raise exc  # ours to fix (a driver outside the pins): logged as error
    own = own_exhaustion(exc)
    if own is not None:
        return own.reason, own.detail
    in_connect = stage in _CONNECT_STAGES
    foreign = foreign_answer(marks) if in_connect else ""
    if foreign:
        return "protocol", foreign
    chain = _chain(exc)
    for index, item in enumerate(chain):
        reason = _reason_of(item, stage, in_connect)
        if reason is None:
            continue
        if reason == "connection_reset" and not isinstance(item, OSError):
            # A driver's "connection lost" (asyncpg 08003, MySQL 2013): the network's
            # own error, when the driver kept it, is judged as in every kind.
            cause = next((c for c in chain[index + 1:] if isinstance(c, OSError)), None)
            if cause is not None:
                reason = _reason_of(cause, stage, in_connect) or reason
        return reason, _describe(item, reason, stage, marks)
    raise exc


def foreign_answer(marks: Marks) -> str:
    """What the server said first, if it is not PostgreSQL (MySQL: checked on parse)."""
    first = marks.first_bytes
    if first and first[0] not in _PG_FIRST_BYTES:
        return f"the server does not speak PostgreSQL: it answered {first!r}"
    return ""


def _reason_of(exc: BaseException, stage: str, in_connect: bool) -> Reason | None:
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
    if isinstance(exc, NotTheProtocol):
        return "protocol"
    if isinstance(exc, TlsNotOffered):
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
    if isinstance(exc, ConnectionError) and not isinstance(exc, ssl.SSLError) \
            and "SSL" in str(exc):
        return "tls"  # asyncpg: "rejected SSL upgrade", an error during the SSL exchange
    if isinstance(exc, EOFError):  # asyncio.IncompleteReadError included
        return "connection_reset"
    if isinstance(exc, OSError):  # the network: the classifier of every kind
        reason = reason_of(exc, _net_stage(stage, in_connect, exc))
        return "connect_timeout" if reason == "timeout" and in_connect else reason
    return None


def _net_stage(stage: str, in_connect: bool, exc: BaseException) -> Stage:
    """sql's stage as monitor.net's: tcp is the connect; a TLS error before the
    session is ready is the handshake's; the rest is waiting for an answer."""
    if stage in ("dns", "tcp"):
        return "dns" if stage == "dns" else "connect"
    if stage == "tls" or (in_connect and isinstance(exc, ssl.SSLError)):
        return "tls"
    return "receive"


def _describe(exc: BaseException, reason: Reason, stage: str, marks: Marks) -> str:
    if isinstance(exc, asyncpg.PostgresError):
        text = pg_text(exc)
    elif isinstance(exc, aiomysql.MySQLError):
        text = my_text(exc)
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
