"""monitor.net.errors: the one classifier, as a table covering every reason."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest

from monitor.net.errors import (
    Closed,
    ProtocolError,
    Stage,
    TooLarge,
    classify,
    reason_of,
    status_reason,
)
from monitor.probes.base import REASONS


def oserror(code: int) -> OSError:
    return OSError(code, "x")


def cert_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    return error


TABLE: list[tuple[str, BaseException, Stage, str]] = [
    ("emfile", oserror(errno.EMFILE), "connect", "error"),
    ("enfile at dns", oserror(errno.ENFILE), "dns", "error"),
    ("enobufs", oserror(errno.ENOBUFS), "send", "error"),
    ("enomem", oserror(errno.ENOMEM), "receive", "error"),
    ("no local port", oserror(errno.EADDRNOTAVAIL), "connect", "error"),
    ("nxdomain", socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns", "dns"),
    ("bad idna", UnicodeError("label empty or too long"), "dns", "dns"),
    ("resolver silent", TimeoutError(), "dns", "dns"),
    ("refused", ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "connect",
     "connect_refused"),
    ("host unreachable", oserror(errno.EHOSTUNREACH), "connect", "connect_refused"),
    ("network unreachable", oserror(errno.ENETUNREACH), "connect", "connect_refused"),
    ("kernel gave up", TimeoutError(errno.ETIMEDOUT, "timed out"), "connect", "connect_timeout"),
    ("etimedout", oserror(errno.ETIMEDOUT), "connect", "connect_timeout"),
    # Issue 14: accepted and reset at once is a reset, never a refusal.
    ("accept then reset", ConnectionResetError(errno.ECONNRESET, "reset"), "connect",
     "connection_reset"),
    ("reset in handshake", ConnectionResetError(errno.ECONNRESET, "reset"), "tls",
     "connection_reset"),
    ("eof in handshake", ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "tls",
     "connection_reset"),
    ("reset while sending", BrokenPipeError(errno.EPIPE, "broken pipe"), "send",
     "connection_reset"),
    ("aborted", ConnectionAbortedError(errno.ECONNABORTED, "aborted"), "receive",
     "connection_reset"),
    ("reset while reading", oserror(errno.ECONNRESET), "receive", "connection_reset"),
    ("short read", asyncio.IncompleteReadError(b"ab", 5), "receive", "connection_reset"),
    ("eof before answer", Closed("before any response byte"), "receive", "connection_reset"),
    ("ssl error after handshake", ssl.SSLError(1, "bad record mac"), "receive",
     "connection_reset"),
    ("untrusted", cert_error(), "tls", "tls"),
    ("garbage", ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls",
     "tls"),
    ("handshake timeout", TimeoutError(), "tls", "timeout"),
    ("silent after request", TimeoutError(), "receive", "timeout"),
    ("not the protocol", ProtocolError("invalid status line"), "receive", "protocol"),
    ("over the cap", TooLarge("body larger than max_body_bytes"), "receive", "assertion"),
    ("a bug of ours", RuntimeError("boom"), "receive", "error"),
]


@pytest.mark.parametrize(("exc", "stage", "reason"), [row[1:] for row in TABLE],
                         ids=[row[0] for row in TABLE])
def test_classify(exc: BaseException, stage: Stage, reason: str) -> None:
    failure = classify(exc, stage, "198.51.100.7:443")
    assert failure.reason == reason
    assert reason_of(exc, stage) == reason
    if reason != "error":
        assert "198.51.100.7:443" in failure.detail


STATUSES = [(429, False, "capacity"), (503, False, "http_status"), (401, False, "http_status"),
            (401, True, "auth"), (403, True, "auth"), (429, True, "capacity"),
            (500, True, "http_status")]


@pytest.mark.parametrize(("status", "upgrade", "reason"), STATUSES)
def test_status_reason(status: int, upgrade: bool, reason: str) -> None:
    assert status_reason(status, upgrade=upgrade) == reason


def test_the_tables_cover_every_reason() -> None:
    """Every reason of the contract list comes out of one of the two tables."""
    covered = {row[3] for row in TABLE} | {row[2] for row in STATUSES}
    assert covered == set(REASONS)


def test_ours_says_so_and_details_hold_no_data() -> None:
    own = classify(oserror(errno.EMFILE), "connect", "10.0.0.1:5432")
    assert own.detail.startswith("ours, not the target's")
    refused = classify(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed "
                                              "('10.0.0.1', 5432)"), "connect", "10.0.0.1:5432")
    assert refused.detail == "connecting to 10.0.0.1:5432: connection refused"
