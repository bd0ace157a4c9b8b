"""A small HTTP/1.1 client that owns its connection, for the probes.

Why not aiohttp: a probe must time TCP connect and the TLS handshake apart
(aiohttp's tracing has no TLS signal), must never resend a request
(aiohttp's client can silently resend an idempotent request on a reset
connection: a retry hides the flakiness we hunt), and must be cheap in CPU
when many probes are due at once. So this client opens a fresh connection
for every request with asyncio streams and speaks HTTP/1.1 itself (a small
response parser below; see the note there on why not h11).

One :func:`fetch` is one logical request: the first connection plus one
fresh connection per followed redirect. It measures, summed over hops:

    dns        getaddrinfo of the host (skipped for IP literals and
               ``connect_address``)
    connect    TCP connect (every resolved address is tried in order)
    tls        the TLS handshake, on https only
    ttfb       request sent -> first byte of the response head
    transfer   first byte -> the end of the body

Failures raise :class:`~monitor.probes.base.ProbeFailure` with one reason:

    dns               the name does not resolve (or the resolver did not
                      answer within the timeout)
    connect_refused   every address refused (or was unreachable)
    connect_timeout   TCP connect not done within the timeout
    tls               handshake failed: verification, wrong host, expired,
                      no shared protocol
    connection_reset  a reset, or EOF before a complete response (during
                      the handshake, before the first byte, mid-body)
    timeout           connected, but no complete response within the timeout
    protocol          not HTTP: invalid status line, head over 64 KiB,
                      broken chunking
    http_status       redirects exhausted (``max_redirects``)
    assertion         body larger than ``max_body_bytes``

Nothing is ever retried and no connection or DNS answer is reused.
Other kinds (lb, load, burst with url) call :func:`fetch` directly;
``ctx`` is optional for them (without it nothing is traced or recorded
into a run, and :attr:`Response.phases` still holds the timings).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from monitor import USER_AGENT
from monitor.config.common import TLSOptions, mask_query
from monitor.probes.base import ProbeFailure, Reason, RunContext
from monitor.probes.compression import ACCEPT_ENCODING, decode_body
from monitor.probes.exhaustion import Lookup, executor_full, own_exhaustion

# A response head larger than this is not a sane HTTP server (docs/architecture.md, reasons).
MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
# Shown in --debug traces (docs/probes/http.md: at most 4 KiB of a body is kept).
TRACE_BODY_BYTES = 4096
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers whose values never reach a trace line, whatever the config says.
SENSITIVE_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
})
# Headers whose values are URLs: their query values are masked in traces.
URL_HEADERS = frozenset({"location", "content-location", "referer"})
# Headers not sent on to another origin when a redirect leaves it.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_MASK = "<redacted>"


@dataclass(frozen=True, slots=True)
class Request:
    """What to send. ``headers`` are sent as given, after ``Host`` and
    ``User-Agent`` (a ``User-Agent`` of the caller replaces ours)."""

    url: str
    method: str = "GET"
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | None = None
    # Query parameters shown as they are in traces; every other value is masked.
    public_query: frozenset[str] = frozenset()


@dataclass(slots=True)
class Response:
    """The final response of a fetch (after redirects).

    ``headers`` keep their order with lower-case names; ``header()`` and
    ``header_map`` look them up. ``history`` holds the redirect responses
    (without bodies) that led here; ``phases`` the timings summed over all hops.
    """

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    url: str
    tls_version: str | None = None
    address: str = ""
    wire_bytes: int = 0  # the body as received; ``body`` is it decoded (compression.py)
    history: list[Response] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def header_map(self) -> dict[str, str]:
        """Lower-case name -> value (repeated headers joined with ', ')."""
        found: dict[str, str] = {}
        for name, value in self.headers:
            found[name] = f"{found[name]}, {value}" if name in found else value
        return found

    def header(self, name: str) -> str | None:
        return self.header_map.get(name.lower())

    def text(self, limit: int | None = None) -> str:
        body = self.body if limit is None else self.body[:limit]
        return body.decode("utf-8", errors="replace")


ResponseHook = Callable[[Response], None]


# -- TLS contexts -------------------------------------------------------------
# Building a context with the system trust store costs milliseconds; probes
# share one per (ca_file, its mtime, insecure, ALPN), so a rotated CA file
# is picked up at the next run.
_CONTEXTS: dict[tuple[str | None, int, bool, tuple[str, ...]], ssl.SSLContext] = {}
HTTP_ALPN = ("http/1.1",)


def ssl_context(tls: TLSOptions | None, alpn: tuple[str, ...] = HTTP_ALPN) -> ssl.SSLContext:
    """The client context for ``tls`` options: the system trust store, or
    only ``ca_file`` when given; no verification with ``insecure_skip_verify``.
    ``alpn`` is offered in the handshake (nothing when empty).
    Raises ProbeFailure("tls") when ``ca_file`` cannot be loaded."""
    tls = tls or TLSOptions()
    ca_file = str(tls.ca_file) if tls.ca_file is not None else None
    try:
        mtime = os.stat(ca_file).st_mtime_ns if ca_file else 0
        key = (ca_file, mtime, tls.insecure_skip_verify, alpn)
        context = _CONTEXTS.get(key)
        if context is None:
            context = _new_context(ca_file, tls.insecure_skip_verify, alpn)
            if len(_CONTEXTS) >= 64:  # reloads with changing CA files: stay bounded
                _CONTEXTS.clear()
            _CONTEXTS[key] = context
    except (OSError, ssl.SSLError) as exc:  # removed or replaced since the config loaded
        own = own_exhaustion(exc, "loading the CA bundle")
        if own is not None:
            raise own from None
        raise ProbeFailure("tls", f"cannot load ca_file {ca_file}: {exc}") from None
    return context


def _new_context(ca_file: str | None, insecure: bool, alpn: tuple[str, ...]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


# -- progress, timings and the trace ---------------------------------------------
class _Run:
    """What one fetch has done so far: timings, the stage a timeout hits."""

    __slots__ = ("bytes_in", "ctx", "lookup", "phases", "public_query", "stage", "target",
                 "trace_on")

    def __init__(self, ctx: RunContext | None, public_query: frozenset[str] = frozenset()
                 ) -> None:
        self.ctx = ctx
        self.trace_on = ctx is not None and ctx.debug
        self.phases: dict[str, float] = {}
        self.stage = "dns"
        self.target = ""
        self.bytes_in = 0
        self.lookup: Lookup | None = None  # the DNS lookup under way, if any
        self.public_query = public_query  # shown as is in the trace; other values masked

    def phase(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds
        if self.ctx is not None:
            self.ctx.phase(name, seconds)

    def trace(self, line: str) -> None:
        if self.trace_on:
            assert self.ctx is not None
            self.ctx.trace(line)

    def timed_out(self, timeout: float) -> ProbeFailure:
        where = self.target
        if self.stage == "dns":
            if self.lookup is not None and not self.lookup.started:
                return executor_full(where.rpartition(":")[0], timeout)
            return ProbeFailure("dns", f"resolving {where} did not finish within {timeout:.3g}s")
        if self.stage == "connect":
            return ProbeFailure("connect_timeout",
                                f"TCP connect to {where} not done within {timeout:.3g}s")
        if self.stage == "tls":
            return ProbeFailure("timeout",
                                f"TLS handshake with {where} not done within {timeout:.3g}s")
        if self.stage == "ttfb":
            return ProbeFailure("timeout",
                                f"no response from {where} within {timeout:.3g}s (request sent)")
        return ProbeFailure("timeout", f"response from {where} not complete within "
                                       f"{timeout:.3g}s ({self.bytes_in} bytes received)")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


def _trace_header(prefix: str, name: str, value: str, public_query: frozenset[str]) -> str:
    lower = name.lower()
    if lower in SENSITIVE_HEADERS:
        shown = _MASK
    elif lower in URL_HEADERS:  # a redirect to a signed URL carries its signature
        shown = mask_query(value, public_query)
    else:
        shown = value
    return f"{prefix} {name}: {shown}"


# -- connections ------------------------------------------------------------------
@dataclass(slots=True)
class Connection:
    """An open connection: asyncio streams plus what the handshake told."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: str
    tls_version: str | None = None

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj: Any = self.writer.get_extra_info("ssl_object")
        return obj  # type: ignore[no-any-return]

    def close(self) -> None:
        # abort(): the socket closes at once, without a close_notify
        # exchange or waiting on a slow peer; the peer sees FIN (or RST
        # when unread bytes were left, as after a redirect's head).
        self.writer.transport.abort()


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> SplitResult:
    """urlsplit, cached: a probe sends the same URL every run."""
    return urlsplit(url)


@functools.lru_cache(maxsize=1024)
def _address(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, Host header, request target) of ``url``;
    ValueError for what cannot be requested (a bad port, no host)."""
    parts = _split(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("not an http(s) URL with a host")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port  # .port raises ValueError when out of range
    authority = host if host.isascii() else host.encode("idna").decode("ascii")
    if ":" in authority:  # an IPv6 literal
        authority = f"[{authority}]"
    if port != default_port:
        authority = f"{authority}:{port}"
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target = f"{target}?{quote(parts.query, safe='/%:@!$&()*+,;=-._~?')}"
    return parts.scheme, host, port, authority, target


@functools.lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int, run: _Run) -> list[str]:
    started = time.monotonic()
    run.lookup = Lookup()
    try:
        infos = await run.lookup.getaddrinfo(host, port)
    except socket.gaierror as exc:
        raise ProbeFailure("dns", f"cannot resolve {host}: {exc.strerror or exc}") from None
    except UnicodeError as exc:  # an invalid IDNA name
        raise ProbeFailure("dns", f"cannot resolve {host}: {exc}") from None
    finally:  # failed or cut short, the time was spent in this phase
        seconds = time.monotonic() - started
        run.phase("dns", seconds)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    run.trace(f"* dns {host} -> {', '.join(addresses)} ({_ms(seconds)})")
    if not addresses:
        raise ProbeFailure("dns", f"{host} resolves to no address")
    return addresses


async def _tcp_connect(addresses: list[str], port: int, run: _Run
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Try the addresses in order (a dual-stack host may not be reachable
    over one family); this is not a retry: no request has been sent."""
    run.stage = "connect"
    started = time.monotonic()
    errors: list[str] = []
    refused = False
    timed_out = False
    try:
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(address, port, limit=READ_SIZE)
            except ConnectionRefusedError:
                refused = True
                errors.append(f"{address}: connection refused")
            except TimeoutError:  # the kernel gave up (ETIMEDOUT), not our deadline
                timed_out = True
                errors.append(f"{address}: timed out")
            except OSError as exc:  # unreachable host or network, or ours
                own = own_exhaustion(exc, f"connecting to {address}:{port}")
                if own is not None:
                    raise own from None
                errors.append(f"{address}: {exc.strerror or exc}")
            else:
                run.trace(f"* connected to {address}:{port} "
                          f"({_ms(time.monotonic() - started)})")
                return reader, writer, address
    finally:
        run.phase("connect", time.monotonic() - started)
    reason: Reason = "connect_timeout" if timed_out and not refused else "connect_refused"
    raise ProbeFailure(reason, f"cannot connect to port {port}: {'; '.join(errors)}")


async def _handshake(writer: asyncio.StreamWriter, context: ssl.SSLContext,
                     server_name: str, run: _Run) -> str | None:
    run.stage = "tls"
    started = time.monotonic()
    try:
        await _start_tls(writer, context, server_name, run)
    finally:
        run.phase("tls", time.monotonic() - started)
    obj: Any = writer.get_extra_info("ssl_object")
    version: str | None = obj.version() if obj is not None else None
    if run.trace_on and obj is not None:
        cipher = obj.cipher()
        run.trace(f"* tls {version} {cipher[0] if cipher else ''} "
                  f"server_name={server_name} ({_ms(time.monotonic() - started)})")
    return version


async def _start_tls(writer: asyncio.StreamWriter, context: ssl.SSLContext,
                     server_name: str, run: _Run) -> None:
    try:
        await writer.start_tls(context, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        writer.transport.abort()
        message = exc.verify_message or exc.reason or str(exc)
        raise ProbeFailure("tls", f"certificate of {server_name} rejected: {message}") from None
    except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError,
            asyncio.IncompleteReadError) as exc:
        writer.transport.abort()
        raise ProbeFailure("connection_reset", f"connection to {run.target} closed during "
                           f"the TLS handshake ({type(exc).__name__})") from None
    except ssl.SSLError as exc:
        writer.transport.abort()
        raise ProbeFailure("tls", f"TLS handshake with {run.target} failed: "
                           f"{exc.reason or exc}") from None
    except ConnectionError as exc:
        writer.transport.abort()
        raise ProbeFailure("connection_reset", f"connection to {run.target} lost during "
                           f"the TLS handshake: {exc}") from None


async def _open(host: str, port: int, run: _Run, *, tls: TLSOptions | None,
                use_tls: bool, connect_address: str | None, server_name: str | None,
                alpn: tuple[str, ...] = HTTP_ALPN) -> Connection:
    run.target = f"{host}:{port}"
    run.stage = "dns"
    context = ssl_context(tls, alpn) if use_tls else None  # a bad ca_file: before connecting
    if connect_address is not None:
        addresses = [connect_address]
    elif _is_ip(host):
        addresses = [host]
    else:
        addresses = await _resolve(host, port, run)
    reader, writer, address = await _tcp_connect(addresses, port, run)
    version = None
    if context is not None:
        try:
            version = await _handshake(writer, context, server_name or host, run)
        except BaseException:
            writer.transport.abort()
            raise
    return Connection(reader, writer, address, version)


async def open_connection(host: str, port: int, *, timeout: float,
                          tls: TLSOptions | None = None, use_tls: bool = True,
                          ctx: RunContext | None = None, connect_address: str | None = None,
                          alpn: tuple[str, ...] = ()) -> Connection:
    """Resolve, connect and (with ``use_tls``) do the TLS handshake, timing
    each phase into ``ctx``; the TLS probe and non-HTTP kinds use this.

    SNI and the name verified are ``tls.server_name`` or else ``host``;
    ``alpn`` protocols are offered (none by default: any TLS service).
    Raises ProbeFailure (dns, connect_refused, connect_timeout, tls,
    connection_reset, timeout). The caller closes the connection.
    """
    run = _Run(ctx)
    try:
        async with asyncio.timeout(timeout):
            return await _open(host, port, run, tls=tls, use_tls=use_tls,
                               connect_address=connect_address,
                               server_name=tls.server_name if tls else None, alpn=alpn)
    except TimeoutError:
        raise run.timed_out(timeout) from None


# -- one exchange -------------------------------------------------------------------
def _request_head(request: Request, host: str) -> list[tuple[str, str]]:
    given = {name.lower() for name, _ in request.headers}
    headers: list[tuple[str, str]] = []
    if "host" not in given:
        headers.append(("Host", host))
    if "user-agent" not in given:
        headers.append(("User-Agent", USER_AGENT))
    if "accept-encoding" not in given:
        headers.append(("Accept-Encoding", ACCEPT_ENCODING))
    headers.append(("Connection", "close"))
    headers.extend(request.headers)
    if request.body is not None and "content-length" not in given:
        headers.append(("Content-Length", str(len(request.body))))
    return headers


def _looks_like_http(data: bytes) -> bool:
    return b"HTTP/"[: len(data)] == data[:5]


# HTTP/1.x parsing is done here rather than with h11: h11 was a fifth of
# the CPU of a plain-HTTP probe run (measured with bench/http_probe_cpu.py),
# and a client only needs the response side. RFC 9112: status line,
# header fields, message body length.
# Heads are decoded as latin-1 (RFC 9110 5.5: other bytes are opaque).
_STATUS_LINE = re.compile(r"HTTP/(\d\.\d) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
# A chunk-size line with extensions longer than this is not a sane server.
MAX_CHUNK_LINE = 4096


class _ProtocolError(Exception):
    """The peer's bytes are not HTTP/1.x; becomes reason ``protocol``."""


class _Closed(Exception):
    """EOF before a complete response; becomes reason ``connection_reset``."""


class _Incoming:
    """Buffered reading of one response off a stream, counting bytes and
    noting the first byte's time (the end of ttfb)."""

    __slots__ = ("buf", "eof", "first_byte", "reader", "run", "sent")

    def __init__(self, reader: asyncio.StreamReader, run: _Run, sent: float) -> None:
        self.reader = reader
        self.run = run
        self.sent = sent
        self.buf = bytearray()
        self.eof = False
        self.first_byte = 0.0

    async def more(self) -> None:
        """Read what has arrived into the buffer; _Closed at EOF."""
        if self.eof:
            raise _Closed
        data = await self.reader.read(READ_SIZE)
        if not data:
            self.eof = True
            raise _Closed
        run = self.run
        if not run.bytes_in:
            self.first_byte = time.monotonic()
            run.phase("ttfb", self.first_byte - self.sent)
            run.stage = "transfer"
        if run.bytes_in < 5:
            start = bytes(self.buf[:5]) + data[: 5 - len(self.buf)]
            if not _looks_like_http(start):
                raise _ProtocolError(f"not an HTTP response: {data[:40]!r}")
        run.bytes_in += len(data)
        self.buf += data

    def take(self, size: int) -> bytes:
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def _head_end(self, start: int) -> tuple[int, int]:
        """(end of the head's text, end of the blank line), or (-1, -1).
        Lines end in CRLF, or in a bare LF from lax servers."""
        crlf = self.buf.find(b"\n\r\n", start)
        lf = self.buf.find(b"\n\n", start)
        if lf >= 0 and (crlf < 0 or lf < crlf):
            return lf, lf + 2
        if crlf >= 0:
            return crlf, crlf + 3
        return -1, -1

    async def head(self) -> tuple[str, int, str, list[tuple[str, str]]]:
        """(version, status, reason, headers with lower-case names)."""
        searched = 0
        while True:
            # Look only at new bytes (and 2 before, where an end may straddle).
            text_end, end = self._head_end(max(0, searched - 2))
            if end >= 0:
                break
            if len(self.buf) > MAX_HEAD_BYTES:
                raise _ProtocolError(f"response head larger than {MAX_HEAD_BYTES // 1024} KiB")
            searched = len(self.buf)
            await self.more()
        if text_end > MAX_HEAD_BYTES:
            raise _ProtocolError(f"response head larger than {MAX_HEAD_BYTES // 1024} KiB")
        lines = self.take(end)[:text_end].decode("latin-1").split("\n")
        status = _STATUS_LINE.fullmatch(lines[0].rstrip("\r"))
        if status is None:
            raise _ProtocolError(f"invalid status line {lines[0][:80]!r}")
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
                raise _ProtocolError(f"invalid header line {line[:80]!r}")
        return status[1], int(status[2]), status[3] or "", headers

    async def exactly(self, size: int) -> bytes:
        while len(self.buf) < size:
            await self.more()
        return self.take(size)

    async def line(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if len(self.buf) > MAX_CHUNK_LINE:
                raise _ProtocolError("chunk-size line too long")
            await self.more()
        return self.take(end + 1).rstrip(b"\r\n")

    async def body(self, framing: str | int, cap: int) -> bytes:
        """The body framed by Content-Length (an int), ``chunked`` or ``close``."""
        if isinstance(framing, int):
            if framing > cap:
                raise _TooBig
            return await self.exactly(framing)
        if framing == "close":
            while not self.eof:
                if len(self.buf) > cap:
                    raise _TooBig
                try:
                    await self.more()
                except _Closed:
                    break
            if len(self.buf) > cap:
                raise _TooBig
            return self.take(len(self.buf))
        parts: list[bytes] = []
        size = 0
        while True:
            line = await self.line()
            digits = _CHUNK_SIZE.fullmatch(line.partition(b";")[0].strip())
            if digits is None:
                raise _ProtocolError(f"invalid chunk size {line[:40]!r}")
            chunk = int(digits[0], 16)
            if chunk == 0:
                while await self.line():  # trailer fields, up to the blank line
                    pass
                return b"".join(parts)
            size += chunk
            if size > cap:
                raise _TooBig
            parts.append(await self.exactly(chunk))
            if await self.line():
                raise _ProtocolError("chunk data longer than its size")


class _TooBig(Exception):
    """A body over max_body_bytes; becomes reason ``assertion``."""


def _framing(method: str, status: int, headers: list[tuple[str, str]]) -> str | int:
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
        raise _ProtocolError(f"invalid Content-Length {', '.join(sorted(lengths))!r}")
    return int(lengths.pop())


def _encode_request(method: str, target: str, headers: list[tuple[str, str]],
                    body: bytes | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers:
        if "\r" in value or "\n" in value:  # would split the header: never send it
            raise ValueError(f"header {name} has a line break in its value")
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


async def _exchange(connection: Connection, request: Request, authority: str, target: str,
                    run: _Run, *, redirects_on: bool, max_body_bytes: int,
                    on_head: Callable[[Response], None]) -> Response:
    headers = _request_head(request, authority)
    out = _encode_request(request.method, target, headers, request.body)
    if run.trace_on:
        run.trace(f"> {request.method} {mask_query(target, run.public_query)} HTTP/1.1")
        for name, value in headers:
            run.trace(_trace_header(">", name, value, run.public_query))
    run.stage = "ttfb"
    run.bytes_in = 0
    try:
        connection.writer.write(out)
        await connection.writer.drain()
    except (OSError, ssl.SSLError) as exc:  # resets, and ICMP errors on an open socket
        raise ProbeFailure("connection_reset", f"connection to {run.target} lost while "
                           f"sending the request: {exc}") from None
    incoming = _Incoming(connection.reader, run, time.monotonic())
    response: Response | None = None
    read_body = False
    try:
        while True:
            version, status, reason, fields = await incoming.head()
            if 100 <= status < 200 and status != 101:
                continue  # interim (100 Continue, 103 Early Hints): the answer follows
            break
        framing = _framing(request.method, status, fields)
        response = Response(
            status=status, reason=reason, http_version=version, headers=fields, body=b"",
            url=request.url, tls_version=connection.tls_version, address=connection.address,
        )
        if run.trace_on:
            run.trace(f"< HTTP/{version} {status} {reason}")
            for name, value in fields:
                run.trace(_trace_header("<", name, value, run.public_query))
        on_head(response)
        # A redirect about to be followed (or to fail the run as one too
        # many) is judged by its head alone: its body is not read.
        read_body = not (redirects_on and _location(response) is not None)
        if read_body:
            response.body = await incoming.body(framing, max_body_bytes)
    except _ProtocolError as exc:
        raise ProbeFailure("protocol", f"invalid HTTP response from {run.target}: "
                                       f"{exc}") from None
    except _TooBig:
        raise ProbeFailure("assertion", f"body larger than max_body_bytes "
                                        f"({max_body_bytes} bytes)") from None
    except _Closed:
        raise ProbeFailure("connection_reset", _eof_detail(run, response)) from None
    except (OSError, ssl.SSLError) as exc:  # resets, and ICMP errors on an open socket
        raise ProbeFailure("connection_reset", _eof_detail(run, response, exc)) from None
    run.phase("transfer", time.monotonic() - incoming.first_byte)
    if read_body:  # decoded after the transfer phase: that times the network alone
        response.wire_bytes = len(response.body)
        response.body = decode_body(response.body, response.header("content-encoding"),
                                    max_body_bytes)
    if run.trace_on and read_body:
        shown = response.body[:TRACE_BODY_BYTES].decode("utf-8", errors="replace")
        run.trace(f"< body ({len(response.body)} bytes, {response.wire_bytes} on the wire): "
                  f"{shown}")
    return response


def _eof_detail(run: _Run, response: Response | None, error: Exception | None = None) -> str:
    if not run.bytes_in:
        where = "before any response byte"
    elif response is None:
        where = "inside the response head"
    else:
        where = "before the end of the body"
    if error is None:
        return f"connection to {run.target} closed {where}"
    return f"connection to {run.target} lost {where}: {error}"


# -- the public request ----------------------------------------------------------------
async def fetch(
    request: Request,
    *,
    timeout: float,
    ctx: RunContext | None = None,
    tls: TLSOptions | None = None,
    connect_address: str | None = None,
    max_redirects: int = 10,
    max_body_bytes: int = 1024 * 1024,
    on_response: ResponseHook | None = None,
) -> Response:
    """Send ``request`` on a fresh connection and return the final response.

    ``timeout`` bounds the whole fetch, redirects included. ``tls`` gives
    trust (``ca_file``), ``server_name`` (SNI and the name verified, for the
    URL's own host) and ``insecure_skip_verify``. ``connect_address`` makes
    the first host's connections go to that IP while Host header and SNI
    stay those of the URL (lb probes every resolved address this way).
    ``on_response`` sees every response head, redirects included, as soon
    as it arrives (count them there). With ``ctx`` the phases are added to
    the run and, in debug mode, the trace gets phases and both heads with
    credential headers masked.

    Raises ProbeFailure (see the module docstring); never retries.
    """
    run = _Run(ctx, request.public_query)
    first_host = _split(request.url).hostname
    history: list[Response] = []

    def seen(response: Response) -> None:
        if on_response is not None:
            on_response(response)

    try:
        async with asyncio.timeout(timeout):
            current = request
            while True:
                try:
                    scheme, host, port, authority, target = _address(current.url)
                except ValueError as exc:
                    if current is request:  # a caller's mistake, not the target's
                        raise
                    raise ProbeFailure("http_status", f"cannot follow the redirect to "
                                       f"{_short(current.url)}: {exc}") from None
                same_host = host == first_host
                use_tls = scheme == "https"
                connection = await _open(
                    host, port, run, tls=tls, use_tls=use_tls,
                    connect_address=connect_address if same_host else None,
                    server_name=tls.server_name if tls is not None and same_host else None,
                )
                follow = len(history) < max_redirects
                try:
                    response = await _exchange(
                        connection, current, authority, target, run,
                        redirects_on=max_redirects > 0,
                        max_body_bytes=max_body_bytes, on_head=seen,
                    )
                finally:
                    connection.close()
                location = _location(response)
                if location is not None:
                    location = urljoin(current.url, location)
                # Without a Location to follow, or with following off, this
                # response (a 3xx too) is the answer.
                if location is None or max_redirects == 0:
                    return _final(response, history, run)
                if not follow:
                    raise ProbeFailure(
                        "http_status",
                        f"stopped after {max_redirects} redirects (max_redirects): "
                        f"{response.status} from {_short(current.url)} to {_short(location)}",
                    )
                history.append(response)
                current = _redirected(current, response.status, location)
                run.trace(f"* redirect {response.status} -> {_short(current.url)}")
    except TimeoutError:
        raise run.timed_out(timeout) from None


def _final(response: Response, history: list[Response], run: _Run) -> Response:
    response.history = history
    response.phases = dict(run.phases)
    if run.trace_on:
        run.trace("* phases " + " ".join(f"{name}={_ms(seconds)}"
                                         for name, seconds in run.phases.items()))
    return response


def _location(response: Response) -> str | None:
    if response.status not in REDIRECT_STATUSES:
        return None
    return response.header("location")


def _short(url: str) -> str:
    """A URL without its query (it may carry tokens) for details."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _redirected(request: Request, status: int, url: str) -> Request:
    method, body = request.method, request.body
    headers = list(request.headers)
    # As browsers do: 303, and 301/302 after POST, continue as GET without a body.
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = [(n, v) for n, v in headers
                   if n.lower() not in ("content-length", "content-type")]
    if _origin(url) != _origin(request.url):
        # Credentials are not handed to another origin.
        headers = [(n, v) for n, v in headers if n.lower() not in _CREDENTIAL_HEADERS]
    return Request(url=url, method=method, headers=headers, body=body,
                   public_query=request.public_query)
