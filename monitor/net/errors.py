"""One classifier of network errors: (exception, stage) -> a failure reason.

Every kind's transport (resolve, connect, TLS, send, receive) hands what it
caught here, with the stage it was in, and gets back a ProbeFailure whose
reason means the same thing in every kind:

    stage     exception                                  reason
    any       EMFILE, ENFILE, ENOBUFS, ENOMEM (ours)     error
    connect   EADDRNOTAVAIL (no local port left: ours)   error
    dns       gaierror, an invalid IDNA name             dns
    dns       TimeoutError (no answer in time)           dns
    connect   ECONNREFUSED                               connect_refused
    connect   EHOSTUNREACH, ENETUNREACH (ICMP: the       connect_refused
              network refused)
    connect   TimeoutError, ETIMEDOUT                    connect_timeout
    any       ECONNRESET, EPIPE, ECONNABORTED, EOF       connection_reset
              (IncompleteReadError, SSLEOFError,
              :class:`Closed`); also at connect: the
              peer accepted and reset at once (issue 14:
              never connect_refused)
    tls       certificate verification failed            tls
    tls       any other SSLError (garbage, no shared     tls
              protocol or cipher, alert from the peer)
    tls/send/ TimeoutError                               timeout
    receive
    receive   :class:`ProtocolError` (not the protocol)  protocol
    receive   :class:`TooLarge` (over a configured cap)  assertion
    after     an SSLError once the handshake is done     connection_reset
    any       anything else                              error (a bug of ours)

Statuses are judged by :func:`status_reason` (capacity, auth, http_status).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from typing import Literal

from monitor.net.exhaustion import OWN_ERRNOS, own_exhaustion
from monitor.probes.base import ProbeFailure, Reason

Stage = Literal["dns", "connect", "tls", "send", "receive"]

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                                 errno.ENETDOWN})


class ProtocolError(Exception):
    """The peer's bytes are not the protocol spoken; reason ``protocol``."""


class TooLarge(Exception):
    """An answer over a configured cap (``max_body_bytes``); reason ``assertion``."""


class Closed(Exception):
    """EOF before a complete answer; reason ``connection_reset``."""


def reason_of(exc: BaseException, stage: Stage) -> Reason:
    """The reason alone (no logging, no detail): what :func:`classify` decides."""
    if isinstance(exc, OSError) and exc.errno in OWN_ERRNOS:
        return "error"
    if isinstance(exc, ProtocolError):
        return "protocol"
    if isinstance(exc, TooLarge):
        return "assertion"
    if isinstance(exc, Closed | asyncio.IncompleteReadError | ssl.SSLEOFError):
        return "connection_reset"
    if stage == "dns":
        if isinstance(exc, socket.gaierror | UnicodeError | TimeoutError):
            return "dns"
        return "error"
    if isinstance(exc, TimeoutError) or (isinstance(exc, OSError)
                                         and exc.errno == errno.ETIMEDOUT):
        return "connect_timeout" if stage == "connect" else "timeout"
    if isinstance(exc, ssl.SSLError):
        # After the handshake an SSL error is the stream breaking, not trust.
        return "tls" if stage in ("tls", "connect") else "connection_reset"
    if isinstance(exc, OSError):
        code = exc.errno
        if code in _RESET_ERRNOS or isinstance(exc, ConnectionResetError | BrokenPipeError
                                               | ConnectionAbortedError):
            return "connection_reset"
        if stage == "connect":
            if code == errno.EADDRNOTAVAIL:
                return "error"
            if code == errno.ECONNREFUSED or code in _UNREACHABLE_ERRNOS:
                return "connect_refused"
            return "error"
        return "connection_reset"
    return "error"


def classify(exc: BaseException, stage: Stage, where: str) -> ProbeFailure:
    """The ProbeFailure for ``exc`` caught in ``stage`` while talking to ``where``.

    Our own exhaustion is logged (throttled) and says so; everything else
    gets a short, secret-free detail naming ``where`` and what happened.
    """
    if isinstance(exc, ProbeFailure):
        return exc
    own = own_exhaustion(exc, f"{_DOING[stage]} {where}")
    if own is not None:
        return own
    reason = reason_of(exc, stage)
    if reason == "error" and stage == "connect" and isinstance(exc, OSError) \
            and exc.errno == errno.EADDRNOTAVAIL:
        return ProbeFailure("error", f"ours, not the target's: no local address or port "
                                     f"left (EADDRNOTAVAIL) while connecting to {where}")
    return ProbeFailure(reason, f"{_DOING[stage]} {where}: {what(exc)}")


def describe(exc: BaseException, stage: Stage = "receive") -> str:
    """A short, secret-free description of a network exception, with its stage."""
    text = what(exc)
    return text if isinstance(exc, asyncio.IncompleteReadError) else \
        f"{text} while {_doing(stage)}"


def what(exc: BaseException) -> str:
    """What happened, in a few words (no secrets: no data, only errno texts)."""
    if isinstance(exc, TimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"closed by the peer after {len(exc.partial)} of {exc.expected} bytes"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate rejected: {exc.verify_message or exc.reason or exc}"
    if isinstance(exc, ssl.SSLEOFError):
        return "closed by the peer"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.errno:
        # os.strerror, not exc.strerror: asyncio's says "Connect call failed (...)".
        return os.strerror(exc.errno).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, ProtocolError | TooLarge | Closed) and str(exc):
        return str(exc)
    return type(exc).__name__


_DOING: dict[str, str] = {
    "dns": "resolving",
    "connect": "connecting to",
    "tls": "TLS handshake with",
    "send": "sending to",
    "receive": "waiting for the answer of",
}


def _doing(stage: Stage) -> str:
    """The stage as it reads after "while": "connecting", "sending"."""
    if stage == "tls":
        return "in the TLS handshake"
    return _DOING[stage].rsplit(" ", 1)[0] if stage != "dns" else "resolving"


def status_reason(status: int, *, upgrade: bool = False) -> Reason:
    """The reason of an unexpected status: 429 is ``capacity`` (the platform is
    out of room); 401/403 on a WebSocket upgrade ``auth``; else ``http_status``."""
    if status == 429:
        return "capacity"
    if upgrade and status in (401, 403):
        return "auth"
    return "http_status"


__all__ = ["Closed", "ProtocolError", "Stage", "TooLarge", "classify", "describe",
           "reason_of", "status_reason"]
