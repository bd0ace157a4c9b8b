"""An HTTP/1.x response parser that does no I/O: bytes in, events out.

    parser = ResponseParser("GET", max_body=1 << 20)
    for event in parser.feed(data):      # feed(b"") at EOF
        Head(version, status, reason, headers) | Data(bytes) | End()

It raises :class:`~monitor.net.errors.ProtocolError` for what is not
HTTP/1.x (an invalid status line or header line, a head over
``MAX_HEAD_BYTES``, broken chunking, a bad Content-Length),
:class:`~monitor.net.errors.TooLarge` for a body over ``max_body`` and
:class:`~monitor.net.errors.Closed` at EOF before the response is
complete. Interim responses (100 Continue, 103 Early Hints) are skipped;
101 ends the response at its head. RFC 9112: status line, field lines
(obsolete line folding joined with a space), message body length
(section 6.3). Heads are decoded as latin-1 (RFC 9110 5.5: other bytes
are opaque); lines may end in a bare LF, as lax servers send them.

Why our own and not h11: bench/http_parser.py runs the same probe fetch
on both and prints the CPU of the parse against the CPU of a whole run;
the decision and its figures are in the comment below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.net.errors import Closed, ProtocolError, TooLarge

# Our own parser, not h11, decided by bench/http_parser.py (7 rounds of 1000 plain
# and 250 HTTPS whole `kind: http` runs, these 2 shared cores, same-run medians):
# with h11 in its place a plain-HTTP run costs 0.585 ms of CPU instead of 0.459 ms
# (+0.126 ms, +27 % of the whole run), an HTTPS run 2.000 instead of 1.771 ms
# (+13 %; +9 % in an earlier 5-round run); one typical response alone parses in
# 8.7 us here, 77.6 us with h11. The rule (issue 14) is h11 when it costs under a
# tenth of a whole run: it costs more, most on plain HTTP, the cheapest runs and
# the ones the per-run CPU target is set by, so the saving keeps this parser
# (its table and fuzz tests: tests/unit/net/test_http1.py).
# A response head larger than this is not a sane HTTP server (docs/architecture.md, reasons).
MAX_HEAD_BYTES = 64 * 1024
# A chunk-size line with extensions longer than this is not a sane server.
MAX_CHUNK_LINE = 4096

_STATUS_LINE = re.compile(r"HTTP/(\d\.\d) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


@dataclass(frozen=True, slots=True)
class Head:
    """The final response head; header names are lower-case, order kept."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The response is complete."""


Event = Head | Data | End
_END = End()

# States
_HEAD, _LENGTH, _CLOSE, _SIZE, _CHUNK, _CHUNK_END, _TRAILER, _DONE = range(8)


def framing(method: str, status: int, headers: list[tuple[str, str]]) -> str | int:
    """How the body is delimited (RFC 9112 6.3): a length, chunked, or close."""
    if method == "HEAD" or status in (204, 304) or status < 200:
        return 0
    encodings = [v for n, v in headers if n == "transfer-encoding"]
    if encodings:
        last = ",".join(encodings).rsplit(",", 1)[-1].strip().lower()
        return "chunked" if last == "chunked" else "close"
    lengths = {v.strip() for n, v in headers if n == "content-length"
               for v in v.split(",")}
    if not lengths:
        return "close"
    if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        raise ProtocolError(f"invalid Content-Length {', '.join(sorted(lengths))!r}")
    return int(lengths.pop())


def parse_head(text: str) -> tuple[str, int, str, list[tuple[str, str]]]:
    """(version, status, reason, headers) of a head's text without its blank line."""
    lines = text.split("\n")
    status = _STATUS_LINE.fullmatch(lines[0].rstrip("\r"))
    if status is None:
        raise ProtocolError(f"invalid status line {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and _TOKEN.fullmatch(name):
            headers.append((name.lower(), value.strip(" \t\r")))
        elif line[:1] in (" ", "\t") and headers:
            # Obsolete line folding: joined with a space (RFC 9112 5.2).
            last, before = headers[-1]
            headers[-1] = (last, f"{before} {line.strip()}")
        else:
            raise ProtocolError(f"invalid header line {line[:80]!r}")
    return status[1], int(status[2]), status[3] or "", headers


class ResponseParser:
    """One response to a request of ``method``; see the module docstring."""

    __slots__ = (
        "_buf",
        "_left",
        "_searched",
        "_state",
        "body_bytes",
        "head",
        "max_body",
        "method",
        "received",
    )

    def __init__(self, method: str = "GET", max_body: int = 1024 * 1024) -> None:
        self.method = method
        self.max_body = max_body
        self._buf = bytearray()
        self._state = _HEAD
        self._searched = 0  # bytes of the head already searched for its end
        self._left = 0  # bytes of the current length-framed body or chunk
        self.received = 0
        self.body_bytes = 0
        self.head: Head | None = None

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[Event]:
        """Events for ``data`` (``b""``: the peer closed)."""
        if self._state == _DONE:
            return []
        if not data:
            return self._eof()
        if self.received < 5:
            start = bytes(self._buf[:5]) + data[: 5 - len(self._buf)]
            if b"HTTP/"[: len(start)] != start[:5]:
                raise ProtocolError(f"not an HTTP response: {data[:40]!r}")
        self.received += len(data)
        self._buf += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    # -- the states -------------------------------------------------------------
    def _step(self, events: list[Event]) -> bool:
        """Advance one state with the buffer; False when more bytes are needed."""
        state = self._state
        buf = self._buf
        if state == _HEAD:
            return self._head(events)
        if state == _LENGTH:
            if not buf:
                return False
            take = min(len(buf), self._left)
            self._data(events, take)
            self._left -= take
            if not self._left:
                self._finish(events)
            return False
        if state == _CLOSE:
            if buf:
                self._data(events, len(buf))
            return False
        if state == _SIZE:
            line = self._line()
            if line is None:
                return False
            digits = _CHUNK_SIZE.fullmatch(line.partition(b";")[0].strip())
            if digits is None:
                raise ProtocolError(f"invalid chunk size {line[:40]!r}")
            size = int(digits[0], 16)
            if size == 0:
                self._state = _TRAILER
            else:
                if self.body_bytes + size > self.max_body:
                    raise TooLarge(f"body larger than max_body_bytes ({self.max_body} bytes)")
                self._left = size
                self._state = _CHUNK
            return True
        if state == _CHUNK:
            if not buf:
                return False
            take = min(len(buf), self._left)
            self._data(events, take)
            self._left -= take
            if self._left:
                return False
            self._state = _CHUNK_END
            return True
        if state == _CHUNK_END:
            line = self._line()
            if line is None:
                return False
            if line:
                raise ProtocolError("chunk data longer than its size")
            self._state = _SIZE
            return True
        if state == _TRAILER:
            line = self._line()
            if line is None:
                return False
            if not line:  # the blank line after the trailer fields
                self._finish(events)
                return False
            return True
        return False

    def _head(self, events: list[Event]) -> bool:
        buf = self._buf
        start = max(0, self._searched - 2)  # an end may straddle two reads
        crlf = buf.find(b"\n\r\n", start)
        lf = buf.find(b"\n\n", start)
        if lf >= 0 and (crlf < 0 or lf < crlf):
            text_end, end = lf, lf + 2
        elif crlf >= 0:
            text_end, end = crlf, crlf + 3
        else:
            if len(buf) > MAX_HEAD_BYTES:
                raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES // 1024} KiB")
            self._searched = len(buf)
            return False
        if text_end > MAX_HEAD_BYTES:
            raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES // 1024} KiB")
        text = bytes(buf[:text_end]).decode("latin-1")
        del buf[:end]
        self._searched = 0
        version, status, reason, headers = parse_head(text)
        if 100 <= status < 200 and status != 101:
            return True  # interim: the answer follows
        body = framing(self.method, status, headers)
        self.head = Head(version, status, reason, headers)
        events.append(self.head)
        if body == 0:
            self._finish(events)
            return False
        if isinstance(body, int):
            if body > self.max_body:
                raise TooLarge(f"body larger than max_body_bytes ({self.max_body} bytes)")
            self._left = body
            self._state = _LENGTH
        else:
            self._state = _SIZE if body == "chunked" else _CLOSE
        return True

    def _line(self) -> bytes | None:
        buf = self._buf
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_CHUNK_LINE:
                raise ProtocolError("chunk-size line too long")
            return None
        line = bytes(buf[:end]).rstrip(b"\r")
        del buf[: end + 1]
        return line

    def _data(self, events: list[Event], size: int) -> None:
        self.body_bytes += size
        if self.body_bytes > self.max_body:
            raise TooLarge(f"body larger than max_body_bytes ({self.max_body} bytes)")
        buf = self._buf
        if size == len(buf):
            events.append(Data(bytes(buf)))
            buf.clear()
        else:
            events.append(Data(bytes(buf[:size])))
            del buf[:size]

    def _finish(self, events: list[Event]) -> None:
        self._state = _DONE
        self._buf.clear()
        events.append(_END)

    def _eof(self) -> list[Event]:
        if self._state == _CLOSE:
            events: list[Event] = []
            self._finish(events)
            return events
        if not self.received:
            raise Closed("before any response byte")
        if self.head is None:
            raise Closed("inside the response head")
        raise Closed("before the end of the body")


__all__ = ["MAX_HEAD_BYTES", "Data", "End", "Event", "Head", "ResponseParser", "framing",
           "parse_head"]
