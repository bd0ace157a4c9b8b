"""One HTTP/2 request on a connection the probe owns, with the ``h2`` state machine.

The fetch (:mod:`monitor.net.fetch`) opens the connection itself
(:mod:`monitor.net.connect`: dns, connect and tls timed as for HTTP/1.1)
and, when ALPN selected ``h2``, hands the stream here. ``h2`` does no I/O
(bytes in, events out, bytes to send), so the socket, the clock and the
phases stay ours: there is no second HTTP stack, and the same
:class:`~monitor.net.connect.Progress` stages apply.

One exchange is one connection and one stream (id 1): the connection
preface and our SETTINGS (no server push, a 64 KiB header list cap as for
HTTP/1.x heads), the request HEADERS (and DATA within the flow-control
windows the server grants), then the response:

    ttfb       request sent -> the first response HEADERS frame (an interim
               1xx counts, as its first byte does over HTTP/1.1)
    transfer   that frame -> END_STREAM

Our SETTINGS grant a receive window of the whole body we may read
(``max_body_bytes`` and some slack) on the stream and the connection, so
the server never waits for a WINDOW_UPDATE and none is sent; SETTINGS and
PING are answered by ``h2``. Nothing is retried, not
even a stream the server refused. Failures:

    protocol          the peer's frames are not HTTP/2: its first frame is not
                      SETTINGS (as when it answers in HTTP/1.1), a frame over
                      SETTINGS_MAX_FRAME_SIZE, or ``h2`` rejects them (invalid
                      headers, a DATA length that contradicts content-length,
                      a header list over 64 KiB)
    connection_reset  RST_STREAM on our stream; GOAWAY before the response
                      ended (the detail names the error code and whether the
                      server had taken the stream); EOF before END_STREAM
    assertion         DATA beyond ``max_body_bytes`` (:class:`TooLarge`)

Socket errors (resets, ICMP) propagate as OSError/SSLError for the caller's
classifier, as on the HTTP/1.1 path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from http import HTTPStatus

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from monitor.net.connect import READ_SIZE, Progress, Stream
from monitor.net.errors import Closed, TooLarge
from monitor.net.http1 import MAX_HEAD_BYTES, Head
from monitor.probes.base import ProbeFailure

ALPN_H2 = "h2"
STREAM_ID = 1
# Hop-by-hop headers that HTTP/2 forbids (RFC 9113 8.2.2); Host becomes :authority.
_CONNECTION_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection",
                                 "transfer-encoding", "upgrade", "host"})
_SETTINGS_FRAME = 0x4  # frame type bytes (RFC 9113 6)
_GOAWAY_FRAME = 0x7
_DEFAULT_WINDOW = 65535  # RFC 9113 6.9.2
_MAX_WINDOW = 2**31 - 1
# Room past max_body_bytes: padding counts against the window, and the byte
# past the cap must be able to arrive for TooLarge to be seen.
_WINDOW_SLACK = 64 * 1024


def receive_window(max_body_bytes: int) -> int:
    """The stream and connection window we grant at the start: the whole body
    we may read, so no WINDOW_UPDATE is ever needed. bench/http2_cpu.py: with
    h2's own updates every 32 KiB a 256 KiB body cost 1.8 ms more CPU than
    over HTTP/1.1 (each update is a TLS record and a send)."""
    return max(_DEFAULT_WINDOW, min(max_body_bytes + _WINDOW_SLACK, _MAX_WINDOW))
_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None)


def request_headers(method: str, scheme: str, authority: str, path: str,
                    headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's HTTP/2 header list: pseudo-headers first, names
    lower-case, connection-specific headers left out (a ``Host`` header
    of the caller becomes ``:authority``; ``TE`` only as ``trailers``)."""
    for name, value in headers:
        if name.lower() == "host":
            authority = value
    out = [(":method", method), (":scheme", scheme), (":authority", authority),
           (":path", path)]
    for name, value in headers:
        lower = name.lower()
        if lower in _CONNECTION_HEADERS or (lower == "te" and value.lower() != "trailers"):
            continue
        out.append((lower, value))
    return out


def error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"error code {code:#x}"


class _Exchange:
    """State of the one stream: what was sent, what came back."""

    def __init__(self, stream: Stream, run: Progress, max_body_bytes: int,
                 wants_body: Callable[[Head], bool]) -> None:
        self.stream = stream
        self.run = run
        self.max_body_bytes = max_body_bytes
        self.wants_body = wants_body
        self.conn = h2.connection.H2Connection(config=_CONFIG)
        self.pending = b""  # request body not yet sent (flow control)
        self.head: Head | None = None
        self.parts: list[bytes] = []
        self.received = 0
        self.read_body = True
        self.ended = False
        self.sent = 0.0
        self.first_headers = 0.0
        self.preface_checked = False
        self.buffer = b""  # the start of a frame not yet complete
        self.start_bytes = b""

    def start(self, headers: list[tuple[str, str]], body: bytes | None) -> None:
        conn = self.conn
        window = receive_window(self.max_body_bytes)
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD_BYTES,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
        })
        conn.initiate_connection()
        if window > _DEFAULT_WINDOW:  # the connection's window, in the same first write
            conn.increment_flow_control_window(window - _DEFAULT_WINDOW)
        conn.send_headers(STREAM_ID, headers, end_stream=not body)
        self.pending = body or b""
        self._send_body()

    def _send_body(self) -> None:
        """As much of the body as the windows allow; the rest after WINDOW_UPDATE."""
        conn = self.conn
        while self.pending:
            room = min(conn.local_flow_control_window(STREAM_ID), conn.max_outbound_frame_size)
            if room <= 0:
                return
            chunk, self.pending = self.pending[:room], self.pending[room:]
            conn.send_data(STREAM_ID, chunk, end_stream=not self.pending)

    async def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.stream.writer.write(out)
            await self.stream.writer.drain()

    def feed(self, data: bytes) -> None:
        """Bytes from the server: handle each event; ``ended`` once done."""
        if not self.preface_checked:
            self._check_preface(data)
        # Whole frames only, and a GOAWAY last in its batch: its event must be
        # handled before the frames after it reach h2 (ConnectionTerminated below).
        buf = self.buffer + data if self.buffer else data
        fed = end = 0
        while len(buf) - end >= 9:
            length = int.from_bytes(buf[end:end + 3], "big")
            if length > self.conn.max_inbound_frame_size:  # never buffered whole
                raise ProbeFailure("protocol", f"invalid HTTP/2 from {self.run.target}: a "
                                   f"frame of {length} bytes, over SETTINGS_MAX_FRAME_SIZE "
                                   f"({self.conn.max_inbound_frame_size})")
            if end + 9 + length > len(buf):
                break
            goaway = buf[end + 3] == _GOAWAY_FRAME
            end += 9 + length
            if goaway:
                self._receive(buf[fed:end])
                fed = end
                if self.ended:
                    return
        if end > fed:
            self._receive(buf[fed:end] if fed or end < len(buf) else buf)
        self.buffer = buf[end:]

    def _receive(self, frame: bytes) -> None:
        try:
            events = self.conn.receive_data(frame)
        except h2.exceptions.ProtocolError as exc:
            raise ProbeFailure("protocol", f"invalid HTTP/2 from {self.run.target}: "
                                           f"{_what(exc)}") from None
        for event in events:
            self._event(event)
            if self.ended:
                return

    def _check_preface(self, data: bytes) -> None:
        """The server's first frame must be SETTINGS (RFC 9113 3.4). h2 would wait
        for the rest of a "frame" whose length is read from, say, "HTTP/1.1 200"."""
        self.start_bytes += data[:9 - len(self.start_bytes)]
        if len(self.start_bytes) < 9:
            return
        self.preface_checked = True
        if self.start_bytes[3] != _SETTINGS_FRAME:
            raise ProbeFailure("protocol", f"invalid HTTP/2 from {self.run.target}: its first "
                                           f"bytes are not a SETTINGS frame "
                                           f"({self.start_bytes!r}...)")

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived | h2.events.InformationalResponseReceived):
            if not self.first_headers:
                self.first_headers = time.monotonic()
                self.run.phase("ttfb", self.first_headers - self.sent)
                self.run.stage = "transfer"
            if isinstance(event, h2.events.ResponseReceived):
                self.head = _head(event.headers or [])
                self.read_body = self.wants_body(self.head)
                if not self.read_body or event.stream_ended is not None:
                    self.ended = True
        elif isinstance(event, h2.events.DataReceived):
            # Not acknowledged: the windows granted at the start already hold
            # more than max_body_bytes, and more is never read.
            data = event.data or b""
            self.received += len(data)
            if self.received > self.max_body_bytes:
                raise TooLarge(f"body over {self.max_body_bytes} bytes")
            self.parts.append(data)
            if event.stream_ended is not None:
                self.ended = True
        elif isinstance(event, h2.events.StreamEnded):
            self.ended = True
        elif isinstance(event, h2.events.StreamReset):
            raise ProbeFailure("connection_reset", f"{self.run.target} reset the HTTP/2 "
                               f"stream ({error_name(event.error_code or 0)}) "
                               f"{self._where()}")
        elif isinstance(event, h2.events.ConnectionTerminated):
            code = event.error_code or 0
            taken = (event.last_stream_id or 0) >= STREAM_ID
            if code == h2.errors.ErrorCodes.NO_ERROR and taken:
                # A graceful shutdown (nginx after http2_max_requests, a reload):
                # our stream is still answered. h2 closes its connection state on
                # any GOAWAY and would reject those frames (encode/httpcore#46),
                # so its state is put back; tests/unit/net/test_http2.py pins it.
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
                return
            state = "after taking our stream" if taken else "without taking our stream"
            raise ProbeFailure("connection_reset", f"{self.run.target} sent GOAWAY "
                               f"({error_name(code)}) {state}, {self._where()}")
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._send_body()
        # SETTINGS acks, PING (answered by h2), PRIORITY, trailers, unknown
        # frames: nothing to do.

    def _where(self) -> str:
        if self.head is None:
            return "before the response head"
        return f"after {self.received} body bytes"


def _head(headers: list[tuple[bytes, bytes]] | list[tuple[str, str]]) -> Head:
    status = 0
    fields: list[tuple[str, str]] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if name == ":status":
            status = int(value)  # h2 validated it: three digits
        elif not name.startswith(":"):
            fields.append((name, value))
    try:
        reason = HTTPStatus(status).phrase  # HTTP/2 has no reason phrase; the standard one
    except ValueError:
        reason = ""
    return Head(version="2", status=status, reason=reason, headers=fields)


def _what(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


async def exchange(stream: Stream, headers: list[tuple[str, str]], body: bytes | None,
                   run: Progress, *, max_body_bytes: int,
                   wants_body: Callable[[Head], bool]) -> tuple[Head, bytes | None]:
    """Send one request on ``stream`` (ALPN selected h2) and read its response.

    ``headers`` come from :func:`request_headers`. ``wants_body`` sees the
    final head and says whether to read the body (a redirect about to be
    followed is judged by its head alone). Returns the head and the body
    (None when not read). Phases ttfb and transfer go into ``run``.
    """
    ex = _Exchange(stream, run, max_body_bytes, wants_body)
    run.stage = "ttfb"
    run.bytes_in = 0
    try:
        ex.start(headers, body)
    except h2.exceptions.ProtocolError as exc:  # a header h2 will not send (run-time value)
        raise ProbeFailure("assertion", f"cannot send the request over HTTP/2: "
                                        f"{_what(exc)}") from None
    await ex.flush()
    ex.sent = time.monotonic()
    reader = stream.reader
    while not ex.ended:
        data = await reader.read(READ_SIZE)
        if not data:
            where = ("before the response head" if ex.head is None
                     else f"after {ex.received} body bytes, before END_STREAM")
            raise Closed(f"by the peer {where}")
        run.bytes_in += len(data)
        ex.feed(data)
        await ex.flush()
    assert ex.head is not None
    run.phase("transfer", time.monotonic() - ex.first_headers)
    if not ex.read_body:
        return ex.head, None
    parts = ex.parts
    return ex.head, parts[0] if len(parts) == 1 else b"".join(parts)


__all__ = ["ALPN_H2", "error_name", "exchange", "request_headers"]
