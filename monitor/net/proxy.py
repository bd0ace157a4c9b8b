"""Requests through an HTTP proxy (``proxy_url``): CONNECT tunnels and absolute-form.

For an https target :func:`open_via_proxy` resolves and connects to the
proxy (phases ``dns`` and ``connect`` time the proxy, not the origin:
the proxy resolves and reaches the origin itself), sends ``CONNECT
host:port`` and reads the proxy's answer (phase ``proxy``: CONNECT sent
-> the proxy's answer head, which holds the proxy's own connect to the
origin), then does the TLS handshake with the origin through the tunnel
(``tls``, with the URL's server name and ALPN as without a proxy). For a
plain-http target it only connects to the proxy; the fetch then sends the
request in absolute form (``GET http://host/path``) with the
``Proxy-Authorization`` header, and the proxy's work lies inside ``ttfb``
(there is no separate answer to time).

Credentials of ``proxy_url`` go out as ``Proxy-Authorization: Basic``
only; traces mask that header and the URL is only ever shown without them.

A failure on the way to the origin says it was the proxy in its detail
and keeps the reason the same condition has without a proxy:

    connect_refused   the proxy's port refused ("proxy 127.0.0.1:3128: ...")
    connect_timeout   TCP connect to the proxy not done in time
    dns               the proxy's name does not resolve
    connection_reset  the proxy closed or reset before answering CONNECT
    timeout           no answer to CONNECT within the timeout
    protocol          the proxy's answer is not HTTP
    auth              407 or 401 (credentials missing or refused: tinyproxy
                      answers wrong ones with 401), 403
                      (the proxy does not let us through: a port it does
                      not tunnel to, a client it does not serve), as a
                      WebSocket upgrade refused with 401/403 is
    capacity          429
    http_status       any other non-2xx answer to CONNECT: 502, 503, 504
                      (the proxy could not reach the origin) and the rest

The detail names the proxy, its answer and what was asked, e.g. "proxy
127.0.0.1:3128 answered 407 Proxy Authentication Required to CONNECT
example.com:443 (proxy_url has no credentials)". Over plain http a 407 is
always the proxy's (RFC 9110 15.5.8) and fails the same way; other
statuses there are the response (a proxy's error page is told apart by
``origins`` rules, e.g. on its ``Server`` header).
"""

from __future__ import annotations

import asyncio
import time

from monitor import USER_AGENT
from monitor.config.common import TLSOptions
from monitor.config.proxy import ProxyURL
from monitor.net.connect import Progress, Stream, handshake, ms, resolve_timed, tcp_connect
from monitor.net.errors import ProtocolError, classify, status_reason
from monitor.net.http1 import MAX_HEAD_BYTES, parse_head
from monitor.net.resolve import IpFamily, ip_literal
from monitor.net.tlsctx import client_context
from monitor.probes.base import ProbeFailure, Reason
from monitor.redact import MASK

PROXY_PHASE = "proxy"


def authority(host: str, port: int) -> str:
    """host:port as a CONNECT target (IDNA, IPv6 in brackets, the port always)."""
    name = host if host.isascii() else host.encode("idna").decode("ascii")
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def refused(proxy: ProxyURL, status: int, reason: str, asked: str) -> ProbeFailure:
    """The failure for a proxy answering ``status`` to ``asked`` (CONNECT x, GET y)."""
    why: Reason = "auth" if status in (401, 407) else status_reason(status, upgrade=True)
    detail = f"proxy {proxy.address} answered {status} {reason}".rstrip() + f" to {asked}"
    if status in (401, 407):
        detail += (" (the credentials of proxy_url were refused)" if proxy.authorization
                   else " (proxy_url has no credentials)")
    return ProbeFailure(why, detail)


def _about_proxy(failure: ProbeFailure, proxy: ProxyURL) -> ProbeFailure:
    if failure.reason == "error":  # ours (no fds, no ports): not the proxy's doing
        return failure
    return ProbeFailure(failure.reason, f"proxy {proxy.address}: {failure.detail}")


async def connect_proxy(proxy: ProxyURL, run: Progress, family: IpFamily) -> Stream:
    """Resolve (unless a literal) and connect to the proxy, timed into dns and
    connect; failures name the proxy."""
    run.target = proxy.address
    run.stage = "dns"
    try:
        literal = ip_literal(proxy.host)
        if literal is not None:
            if family != "any" and family != f"ipv{literal}":
                raise ProbeFailure("dns", f"{proxy.host} is an IPv{literal} address, but "
                                          f"ip_family is {family}")
            addresses = [proxy.host]
        else:
            addresses = await resolve_timed(proxy.host, proxy.port, run, family)
        reader, writer, address = await tcp_connect(addresses, proxy.port, run)
    except ProbeFailure as failure:
        raise _about_proxy(failure, proxy) from None
    return Stream(reader, writer, address)


async def _connect_answer(stream: Stream, proxy: ProxyURL, asked: str
                          ) -> tuple[str, int, str, list[tuple[str, str]]]:
    """The proxy's final answer head; the tunnel's bytes stay unread."""
    while True:
        try:
            raw = await stream.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            got = f" after {len(exc.partial)} bytes" if exc.partial else ""
            raise ProbeFailure("connection_reset", f"proxy {proxy.address} closed the "
                               f"connection{got} before answering {asked}") from None
        except asyncio.LimitOverrunError:
            raise ProbeFailure("protocol", f"proxy {proxy.address} answered {asked} with "
                               f"a head over {MAX_HEAD_BYTES // 1024} KiB") from None
        try:
            head = parse_head(raw[:-4].decode("latin-1"))
        except ProtocolError as exc:
            raise ProbeFailure("protocol", f"proxy {proxy.address} answered {asked} with "
                               f"what is not HTTP: {exc}") from None
        if not 100 <= head[1] < 200:
            return head


async def open_via_proxy(proxy: ProxyURL, host: str, port: int, run: Progress, *,
                         tls: TLSOptions | None, use_tls: bool, server_name: str | None,
                         alpn: tuple[str, ...], family: IpFamily) -> Stream:
    """A stream to ``host:port`` through ``proxy``: a CONNECT tunnel with TLS
    inside for https; the proxy connection itself for http (the caller sends
    absolute-form). ``run.target`` names the origin via the proxy afterwards."""
    context = client_context(tls, alpn) if use_tls else None  # bad files: before connecting
    stream = await connect_proxy(proxy, run, family)
    via = f"{authority(host, port)} via proxy {proxy.address}"
    try:
        if context is not None:
            await _tunnel(stream, proxy, host, port, run)
            run.target = via
            stream.tls_version = await handshake(stream.writer, context, server_name or host,
                                                 run)
        run.target = via
    except BaseException:
        stream.close()
        raise
    return stream


async def _tunnel(stream: Stream, proxy: ProxyURL, host: str, port: int,
                  run: Progress) -> None:
    target = authority(host, port)
    asked = f"CONNECT {target}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", f"User-Agent: {USER_AGENT}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    if run.trace_on:
        run.trace(f"> {asked} HTTP/1.1 (proxy {proxy.address})")
        run.trace(f"> Host: {target}")
        if proxy.authorization:
            run.trace(f"> Proxy-Authorization: {MASK}")
    run.stage = PROXY_PHASE
    started = time.monotonic()
    try:
        stream.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        await stream.writer.drain()
        version, status, reason, headers = await _connect_answer(stream, proxy, asked)
    except OSError as exc:  # a reset, or ICMP errors on the open socket
        failure = classify(exc, "receive", proxy.address)
        raise _about_proxy(failure, proxy) from None
    finally:
        run.phase(PROXY_PHASE, time.monotonic() - started)
    if run.trace_on:
        run.trace(f"< HTTP/{version} {status} {reason} (proxy, "
                  f"{ms(time.monotonic() - started)})")
    if not 200 <= status < 300:
        raise refused(proxy, status, reason, asked)
    del headers  # a tunnel's answer carries nothing we use


async def open_tunnel(proxy: ProxyURL, host: str, port: int, run: Progress,
                      family: IpFamily) -> Stream:
    """A CONNECT tunnel to ``host:port`` through ``proxy`` with nothing spoken in
    it yet: for callers that do their own TLS and protocol (a journey's
    WebSocket: RFC 6455 4.1 asks for CONNECT for ws:// too, and aiohttp would
    send ws:// in absolute form, which tinyproxy answers 400)."""
    stream = await connect_proxy(proxy, run, family)
    try:
        await _tunnel(stream, proxy, host, port, run)
    except BaseException:
        stream.close()
        raise
    run.target = f"{authority(host, port)} via proxy {proxy.address}"
    return stream


def timed_out(proxy: ProxyURL, host: str, port: int, timeout: float) -> ProbeFailure:
    """The failure for the deadline hitting while the proxy had CONNECT."""
    return ProbeFailure("timeout", f"proxy {proxy.address} did not answer CONNECT "
                                   f"{authority(host, port)} within {timeout:.3g}s")


__all__ = ["PROXY_PHASE", "authority", "connect_proxy", "open_tunnel", "open_via_proxy",
           "refused", "timed_out"]
