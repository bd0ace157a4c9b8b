"""monitor.net.http1: the I/O-free HTTP/1.x response parser, by tables and a fuzzer."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.net.errors import Closed, ProtocolError, TooLarge
from monitor.net.http1 import MAX_HEAD_BYTES, Data, End, Event, Head, ResponseParser


def parse(chunks: list[bytes], method: str = "GET", max_body: int = 1 << 20,
          eof: bool = True) -> tuple[Head | None, bytes, bool]:
    """(head, body, complete) after feeding ``chunks`` (and EOF)."""
    parser = ResponseParser(method, max_body)
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    if eof:
        events += parser.feed(b"")
    heads = [e for e in events if isinstance(e, Head)]
    body = b"".join(e.data for e in events if isinstance(e, Data))
    return (heads[0] if heads else None), body, any(isinstance(e, End) for e in events)


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


GOOD = [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", "GET", 200, b"body",
                 id="content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n", "GET", 200, b"abcde",
                 id="chunked-with-extension-and-trailer"),
    pytest.param(b"HTTP/1.0 200 OK\r\n\r\nuntil close", "GET", 200, b"until close",
                 id="close-delimited"),
    pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", "GET", 204, b"", id="204"),
    pytest.param(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", 304, b"",
                 id="304-ignores-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", 200, b"",
                 id="head-has-no-body"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                 b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", "POST", 201, b"ok",
                 id="interim-skipped"),
    pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "GET", 200, b"ok",
                 id="bare-lf"),
    pytest.param(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", 200, b"",
                 id="no-reason-phrase"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", "GET", 200, b"abc",
                 id="repeated-equal-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", "GET", 200, b"zzz",
                 id="non-chunked-coding-reads-to-close"),
]


@pytest.mark.parametrize(("wire", "method", "status", "body"), GOOD)
@pytest.mark.parametrize("piece", [1, 3, 7, 1 << 20])
def test_valid_responses_in_any_split(wire: bytes, method: str, status: int, body: bytes,
                                      piece: int) -> None:
    """The same events whether the bytes come at once or one at a time."""
    head, got, complete = parse(split_every(wire, piece), method)
    assert head is not None and head.status == status
    assert got == body
    assert complete


def test_headers_are_lower_case_ordered_and_folded() -> None:
    wire = (b"HTTP/1.1 200 OK\r\nX-One: 1\r\nSet-Cookie: a\r\nset-cookie: b\r\n"
            b"X-Fold: first\r\n  second\r\nContent-Length: 0\r\n\r\n")
    head, _, _ = parse([wire])
    assert head is not None
    assert head.headers == [("x-one", "1"), ("set-cookie", "a"), ("set-cookie", "b"),
                            ("x-fold", "first second"), ("content-length", "0")]
    assert (head.version, head.reason) == ("1.1", "OK")


BAD = [
    pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", ProtocolError, id="not-http"),
    pytest.param(b"\x16\x03\x01\x00\xa5", ProtocolError, id="tls-bytes"),
    pytest.param(b"HTTP/1.1 OK\r\n\r\n", ProtocolError, id="no-status-code"),
    pytest.param(b"HTTP/1.1 099 Low\r\n\r\n", ProtocolError, id="status-out-of-range"),
    pytest.param(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", ProtocolError, id="no-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", ProtocolError, id="space-in-name"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", ProtocolError,
                 id="conflicting-lengths"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ProtocolError,
                 id="negative-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ProtocolError,
                 id="chunk-size-not-hex"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                 ProtocolError, id="chunk-longer-than-size"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000,
                 ProtocolError, id="chunk-size-line-too-long"),
    pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * MAX_HEAD_BYTES, ProtocolError,
                 id="head-over-64k"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", TooLarge,
                 id="length-over-cap"),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 11, TooLarge, id="close-body-over-cap"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n", TooLarge,
                 id="chunk-over-cap"),
    pytest.param(b"", Closed, id="eof-before-any-byte"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-", Closed, id="eof-in-head"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", Closed, id="eof-in-body"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", Closed,
                 id="eof-in-chunk"),
]


@pytest.mark.parametrize(("wire", "error"), BAD)
@pytest.mark.parametrize("piece", [1, 1 << 20])
def test_malformed_responses_raise_one_error(wire: bytes, error: type[Exception],
                                             piece: int) -> None:
    with pytest.raises(error):
        parse(split_every(wire, piece) if wire else [], max_body=10)


def test_eof_details_say_where() -> None:
    for wire, where in [(b"", "before any response byte"),
                        (b"HTTP/1.1 2", "inside the response head"),
                        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "before the end")]:
        with pytest.raises(Closed, match=where):
            parse([wire] if wire else [])


def test_bytes_after_the_end_are_ignored() -> None:
    parser = ResponseParser()
    events = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxGARBAGE")
    assert [type(e) for e in events] == [Head, Data, End]
    assert parser.feed(b"more") == [] and parser.done


# -- fuzzing -------------------------------------------------------------------------------
# Whatever the bytes, the parser returns events or raises one of its three errors; it never
# raises anything else and never loops. Inputs are bounded (size and count) so the test is.
SEEDS = [wire.values[0] for wire in GOOD]
ALLOWED = (ProtocolError, TooLarge, Closed)


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[pos:pos + rng.randint(1, 8)]
        elif op == 1:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            data[pos:pos] = rng.choice([b"\r\n", b"\n", b":", b" ", b"0\r\n\r\n",
                                        b"Content-Length: 99999999\r\n", b"\r\n\r\n",
                                        b"Transfer-Encoding: chunked\r\n", b"ffffffffffffffff"])
        elif op == 3 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:
            data = data[:pos]
    return bytes(data)


def run_parser(data: bytes, piece: int) -> None:
    with contextlib.suppress(*ALLOWED):
        parse(split_every(data, max(piece, 1)) if data else [], max_body=4096)


def test_mutated_responses_never_escape() -> None:
    """3000 mutations of the valid table (fixed seed), fed in random splits."""
    rng = random.Random(14)
    for _ in range(3000):
        run_parser(mutate(rng, rng.choice(SEEDS)), rng.choice([1, 2, 5, 64, 1 << 16]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_escape(data: bytes, piece: int) -> None:
    run_parser(data, piece)
    run_parser(b"HTTP/1.1 200 OK\r\n" + data, piece)
