"""The probes' HTTP fetch: it owns the socket, the phases and the redirects.

Why not aiohttp: a probe must time TCP connect and the TLS handshake apart
(aiohttp's tracing has no TLS signal), must never resend a request
(aiohttp's client can silently resend an idempotent request on a reset
connection: a retry hides the flakiness we hunt), and must be cheap in CPU
when many probes are due at once. So this client opens a fresh connection
for every request (:mod:`monitor.net.connect`: the one resolver, connect
and TLS of every kind) and parses the response with the I/O-free parser of
:mod:`monitor.net.http1` (see there on why not h11), or, when ALPN selected
``h2`` from the ``http_versions`` offer, drives :mod:`monitor.net.http2` (the
``h2`` state machine) on the same connection. With ``proxy`` a hop goes
through :mod:`monitor.net.proxy` (CONNECT for https, absolute-form for http)
unless ``no_proxy`` matches its host.

One :func:`fetch` is one logical request: the first connection plus one
fresh connection per followed redirect. It measures, summed over hops:

    dns        getaddrinfo of the host (skipped for IP literals and
               ``connect_address``), filtered by ``ip_family``
    connect    TCP connect (the resolved addresses are tried in order:
               the resolver policy of :mod:`monitor.net`); to the proxy
               when one is used
    proxy      CONNECT sent -> the proxy's answer (https through a proxy)
    tls        the TLS handshake, on https only
    ttfb       request sent -> first byte of the response head (HTTP/2:
               the first response HEADERS frame)
    transfer   first byte -> the end of the body (HTTP/2: END_STREAM)

Failures raise :class:`~monitor.probes.base.ProbeFailure` with one reason:

    dns               the name does not resolve (or the resolver did not
                      answer within the timeout)
    connect_refused   every address refused (or was unreachable); a peer
                      that accepts and resets at once is connection_reset
    connect_timeout   TCP connect not done within the timeout
    tls               handshake failed: verification, wrong host, expired,
                      no shared protocol
    connection_reset  a reset, or EOF before a complete response (during
                      the handshake, before the first byte, mid-body);
                      HTTP/2 RST_STREAM or GOAWAY before the end
    timeout           connected, but no complete response within the timeout
    protocol          not HTTP: invalid status line, head over 64 KiB,
                      broken chunking, frames that are not HTTP/2; ALPN
                      chose nothing while only h2 was offered
    auth              the proxy answered 407, 401 or 403
    http_status       redirects exhausted (``max_redirects``)
    assertion         body larger than ``max_body_bytes``; a header value
                      with a line break (a journey's extracted variable)

Nothing is ever retried and no connection or DNS answer is reused.
Other kinds (lb, load, burst with url, journey's http steps) call
:func:`fetch` directly;
``ctx`` is optional for them (without it nothing is traced or recorded
into a run, and :attr:`Response.phases` still holds the timings).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from monitor import USER_AGENT
from monitor.config.common import TLSOptions, mask_query
from monitor.config.http import HttpRequestFields, request_body
from monitor.config.proxy import NoProxy, ProxyURL, bypassed
from monitor.net import http2
from monitor.net import proxy as proxies
from monitor.net.compression import ACCEPT_ENCODING, decode_body
from monitor.net.connect import (
    READ_SIZE,
    Progress,
    Stream,
    ms,
    open_connection,
    open_stream,
)
from monitor.net.errors import (
    Closed,
    ProtocolError,
    Stage,
    TooLarge,
    classify,
    reason_of,
    what,
)
from monitor.net.http1 import MAX_HEAD_BYTES, Data, Head, ResponseParser
from monitor.net.resolve import IpFamily, ip_literal
from monitor.net.tlsctx import HTTP_ALPN
from monitor.net.tlsctx import client_context as ssl_context
from monitor.probes.base import ProbeFailure, RunContext
from monitor.redact import MASK, SENSITIVE_HEADERS

# Shown in --debug traces (docs/probes/http.md: at most 4 KiB of a body is kept).
TRACE_BODY_BYTES = 4096
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers whose values are URLs: their query values are masked in traces.
URL_HEADERS = frozenset({"location", "content-location", "referer"})
# Headers not sent on to another origin when a redirect leaves it.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


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


def request_of(fields: HttpRequestFields) -> Request:
    """The Request of a fixed request model (http, lb, load): built once per config."""
    body, headers = request_body(fields)
    return Request(url=fields.url, method=fields.method, headers=headers, body=body,
                   public_query=frozenset(fields.public_query))


def _trace_header(prefix: str, name: str, value: str, public_query: frozenset[str]) -> str:
    lower = name.lower()
    if lower in SENSITIVE_HEADERS:
        shown = MASK
    elif lower in URL_HEADERS:  # a redirect to a signed URL carries its signature
        shown = mask_query(value, public_query)
    else:
        shown = value
    return f"{prefix} {name}: {shown}"


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


def encode_request(method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes | None) -> bytes:
    """The request's bytes; ValueError for a header that would split the head
    (config validation refuses those; a journey's extracted value may not)."""
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name} has a line break or NUL in its value")
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


async def _exchange(connection: Stream, request: Request, authority: str, target: str,
                    run: Progress, *, redirects_on: bool, max_body_bytes: int,
                    on_head: Callable[[Response], None]) -> Response:
    headers = _request_head(request, authority)
    try:
        out = encode_request(request.method, target, headers, request.body)
    except (ValueError, UnicodeEncodeError) as exc:  # a value filled in at run time
        raise ProbeFailure("assertion", f"cannot send the request: {exc}") from None
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
        raise _lost(exc, "send", run, f"connection to {run.target} lost while sending the "
                    f"request: {what(exc)}") from None
    sent = time.monotonic()
    first_byte = sent
    parser = ResponseParser(request.method, max_body_bytes)
    reader = connection.reader
    response: Response | None = None
    parts: list[bytes] = []
    read_body = True
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if data and not run.bytes_in:
                first_byte = time.monotonic()
                run.phase("ttfb", first_byte - sent)
                run.stage = "transfer"
            run.bytes_in += len(data)
            done = False
            for event in parser.feed(data):
                if isinstance(event, Data):
                    parts.append(event.data)
                elif isinstance(event, Head):
                    response = _response(event, request, connection, run)
                    on_head(response)
                    # A redirect about to be followed (or to fail the run as one
                    # too many) is judged by its head alone: its body is not read.
                    read_body = not (redirects_on and _location(response) is not None)
                    if not read_body:
                        done = True
                        break
                else:
                    done = True
            if done:
                break
    except _RECEIVE_ERRORS as exc:
        raise _receive_failure(exc, run, max_body_bytes, response) from None
    assert response is not None
    run.phase("transfer", time.monotonic() - first_byte)
    if read_body:
        _set_body(response, parts[0] if len(parts) == 1 else b"".join(parts), run,
                  max_body_bytes)
    return response


def _set_body(response: Response, body: bytes, run: Progress, max_body_bytes: int) -> None:
    # Decoded after the transfer phase: that times the network alone.
    response.wire_bytes = len(body)
    response.body = decode_body(body, response.header("content-encoding"), max_body_bytes)
    if run.trace_on:
        shown = response.body[:TRACE_BODY_BYTES].decode("utf-8", errors="replace")
        run.trace(f"< body ({len(response.body)} bytes, {response.wire_bytes} on the "
                  f"wire): {shown}")


async def _exchange_h2(connection: Stream, request: Request, authority: str, target: str,
                       run: Progress, *, redirects_on: bool, max_body_bytes: int,
                       on_head: Callable[[Response], None]) -> Response:
    """The same exchange over HTTP/2 (ALPN chose h2): :mod:`monitor.net.http2`."""
    headers = _request_head(request, authority)
    for name, value in headers:
        if "\r" in value or "\n" in value or "\0" in value:  # a value filled in at run time
            raise ProbeFailure("assertion", f"cannot send the request: header {name} has a "
                                            "line break or NUL in its value")
    fields = http2.request_headers(request.method, "https", authority, target, headers)
    if run.trace_on:
        run.trace(f"> {request.method} {mask_query(target, run.public_query)} HTTP/2")
        for name, value in fields[2:]:  # :authority, then the headers as sent
            run.trace(_trace_header(">", name, value, run.public_query))
    found: list[Response] = []

    def wants_body(head: Head) -> bool:
        response = _response(head, request, connection, run)
        found.append(response)
        on_head(response)
        return not (redirects_on and _location(response) is not None)

    try:
        _, body = await http2.exchange(connection, fields, request.body, run,
                                       max_body_bytes=max_body_bytes, wants_body=wants_body)
    except _RECEIVE_ERRORS as exc:
        raise _receive_failure(exc, run, max_body_bytes, found[0] if found else None) from None
    response = found[-1]
    if body is not None:
        _set_body(response, body, run, max_body_bytes)
    return response


def _response(head: Head, request: Request, connection: Stream, run: Progress) -> Response:
    response = Response(
        status=head.status, reason=head.reason, http_version=head.version,
        headers=head.headers, body=b"", url=request.url, tls_version=connection.tls_version,
        address=connection.address,
    )
    if run.trace_on:
        run.trace(f"< HTTP/{head.version} {head.status} {head.reason}")
        for name, value in head.headers:
            run.trace(_trace_header("<", name, value, run.public_query))
    return response


# What reading a response raises, over HTTP/1.1 and HTTP/2 alike, besides ProbeFailure
# (only HTTP/1.1's parser raises ProtocolError: monitor.net.http2 raises ProbeFailure
# for frames that are not HTTP/2).
_RECEIVE_ERRORS = (ProtocolError, TooLarge, Closed, OSError, ssl.SSLError)


def _receive_failure(exc: Exception, run: Progress, max_body_bytes: int,
                     response: Response | None) -> ProbeFailure:
    """The failure for one of :data:`_RECEIVE_ERRORS` while a response was read;
    ``response`` is its head when one had arrived (the detail says where it broke)."""
    if isinstance(exc, ProtocolError):
        return ProbeFailure("protocol", f"invalid HTTP response from {run.target}: {exc}")
    if isinstance(exc, TooLarge):
        return ProbeFailure("assertion", f"body larger than max_body_bytes "
                                         f"({max_body_bytes} bytes)")
    if isinstance(exc, Closed):
        return ProbeFailure("connection_reset", f"connection to {run.target} closed {exc}")
    # resets, and ICMP errors on an open socket
    return _lost(exc, "receive", run, _lost_detail(run, response, exc))


def _lost(exc: BaseException, stage: Stage, run: Progress, detail: str) -> ProbeFailure:
    """The one classifier's reason for an error on the open connection; ours
    (ENOBUFS, ...) says so in its own detail."""
    reason = reason_of(exc, stage)
    return classify(exc, stage, run.target) if reason == "error" else ProbeFailure(reason, detail)


def _lost_detail(run: Progress, response: Response | None, error: Exception) -> str:
    if not run.bytes_in:
        where = "before any response byte"
    elif response is None:
        where = "inside the response head"
    else:
        where = "before the end of the body"
    return f"connection to {run.target} lost {where}: {what(error)}"


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
    ip_family: IpFamily = "any",
    progress: Progress | None = None,
    http_versions: Sequence[str] = HTTP_ALPN,
    proxy: ProxyURL | None = None,
    no_proxy: Sequence[NoProxy] = (),
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
    credential headers masked. ``ip_family`` filters what the host resolves
    to; ``progress`` is the caller's, to read the stage a deadline of its own
    hit, to sum phases over several fetches (a journey's steps) or to stamp
    the connect (burst); it then carries ``ctx``, the public query names and
    ``stamp_connect`` itself, and ``ctx`` must not be given as well.
    ``http_versions`` is the ALPN offer of https hops, in order (the config's
    default is h2 first; this function's, HTTP/1.1 only, is burst's); the
    exchange speaks what the server selected. ``proxy`` sends every hop whose
    host no ``no_proxy`` entry matches through that proxy
    (:mod:`monitor.net.proxy`).

    Raises ProbeFailure (see the module docstring); never retries.
    """
    if progress is not None and ctx is not None:
        raise TypeError("fetch: give ctx or progress (which carries its ctx), not both")
    run = progress if progress is not None else Progress(ctx, request.public_query)
    first_host = _split(request.url).hostname
    history: list[Response] = []
    offer = tuple(http_versions)
    # The proxy of the hop under way while it is still the proxy's part
    # (before the tunnel is up): a deadline there is the proxy's.
    at_proxy: tuple[ProxyURL, str, int] | None = None

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
                server_name = tls.server_name if tls is not None and same_host else None
                hop_proxy = proxy if proxy is not None and not bypassed(no_proxy, host) \
                    else None
                if hop_proxy is not None:
                    if connect_address is not None and same_host:
                        raise ValueError("connect_address and a proxy exclude each other")
                    at_proxy = (hop_proxy, host, port)
                    connection = await proxies.open_via_proxy(
                        hop_proxy, host, port, run, tls=tls, use_tls=use_tls,
                        server_name=server_name, alpn=offer, family=ip_family)
                    at_proxy = None
                else:
                    connection = await open_stream(
                        host, port, run, tls=tls, use_tls=use_tls,
                        connect_address=connect_address if same_host else None,
                        server_name=server_name, alpn=offer, family=ip_family,
                    )
                follow = len(history) < max_redirects
                try:
                    exchange: Exchange = _exchange
                    outgoing = current  # the proxy's credentials never go on to a next hop
                    if use_tls:
                        exchange = _negotiated(connection, offer, run)
                    elif hop_proxy is not None:  # absolute-form, with the proxy's credentials
                        target = f"http://{authority}{target}"
                        if hop_proxy.authorization:
                            outgoing = _with_header(current, "Proxy-Authorization",
                                                    hop_proxy.authorization)
                    response = await exchange(
                        connection, outgoing, authority, target, run,
                        redirects_on=max_redirects > 0,
                        max_body_bytes=max_body_bytes, on_head=seen,
                    )
                finally:
                    connection.close()
                if hop_proxy is not None and not use_tls and response.status == 407:
                    raise proxies.refused(hop_proxy, 407, response.reason,
                                          f"{current.method} {_short(current.url)}")
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
        if at_proxy is not None and run.stage in ("dns", "connect", proxies.PROXY_PHASE):
            via, host, port = at_proxy
            if run.stage == proxies.PROXY_PHASE:
                raise proxies.timed_out(via, host, port, timeout) from None
            failure = run.timed_out(timeout)
            raise ProbeFailure(failure.reason, f"proxy {via.address}: {failure.detail}") \
                from None
        # The TLS handshake through a tunnel names "host:port via proxy ...".
        raise run.timed_out(timeout) from None


Exchange = Callable[..., Awaitable[Response]]


def _negotiated(connection: Stream, offer: tuple[str, ...], run: Progress) -> Exchange:
    """The exchange for what ALPN selected: HTTP/2 for h2, else HTTP/1.1
    (no ALPN answer means HTTP/1.1, unless only h2 was offered)."""
    ssl_object = connection.ssl_object
    selected = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    run.trace(f"* alpn {selected or 'none'} (offered {', '.join(offer)})")
    if selected == http2.ALPN_H2:
        return _exchange_h2
    if "http/1.1" not in offer:
        raise ProbeFailure("protocol", f"{run.target} selected {selected or 'no protocol'} in "
                                       f"ALPN, but http_versions offers only h2")
    return _exchange


def _with_header(request: Request, name: str, value: str) -> Request:
    headers = [(n, v) for n, v in request.headers if n.lower() != name.lower()]
    return Request(url=request.url, method=request.method, headers=[*headers, (name, value)],
                   body=request.body, public_query=request.public_query)


def _final(response: Response, history: list[Response], run: Progress) -> Response:
    response.history = history
    response.phases = dict(run.phases)
    if run.trace_on:
        run.trace("* phases " + " ".join(f"{name}={ms(seconds)}"
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


__all__ = ["HTTP_ALPN", "MAX_HEAD_BYTES", "Request", "Response", "ResponseHook", "Stream",
           "encode_request", "fetch", "ip_literal", "open_connection", "ssl_context"]
