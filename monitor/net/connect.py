"""One timed, classified way to open a connection: resolve, TCP, TLS.

:class:`Progress` is what one exchange has done so far (phase timings, the
stage a timeout hits, trace lines); :func:`open_stream` resolves (unless
given an address), connects (trying the addresses in order, see the
package docstring) and, for TLS, does the handshake, adding ``dns``,
``connect`` and ``tls`` to the phases. Every failure is a ProbeFailure
classified by :mod:`monitor.net.errors`; the caller bounds the time with
``asyncio.timeout`` and turns the TimeoutError into
:meth:`Progress.timed_out`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, cast

from monitor.config.common import TLSOptions
from monitor.net.errors import classify
from monitor.net.exhaustion import Lookup, executor_full
from monitor.net.resolve import IpFamily, ip_literal, resolve
from monitor.net.tlsctx import client_context
from monitor.probes.base import ProbeFailure, RunContext

READ_SIZE = 64 * 1024


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


class Progress:
    """Timings and the stage of one exchange; phases add up over hops.

    With ``ctx`` every phase is also added to the run, and trace lines go
    to its --debug trace. ``phases`` may be a caller's dict (a journey sums
    its http steps' phases into one). ``stamp_connect``: time the connect to
    the kernel's "connected" (see ``_open``), for connects made by the
    hundred at once (burst); the others take asyncio's own connect.
    """

    __slots__ = ("bytes_in", "connected_at", "ctx", "lookup", "phases", "public_query", "stage",
                 "stamp_connect", "target", "trace_on")

    def __init__(self, ctx: RunContext | None = None, public_query: frozenset[str] = frozenset(),
                 phases: dict[str, float] | None = None, *, stamp_connect: bool = False) -> None:
        self.ctx = ctx
        self.stamp_connect = stamp_connect
        self.trace_on = ctx is not None and ctx.debug
        self.phases: dict[str, float] = {} if phases is None else phases
        self.stage: str = "dns"
        self.target = ""
        self.bytes_in = 0
        self.lookup: Lookup | None = None  # the DNS lookup under way, if any
        self.connected_at: float | None = None  # time.monotonic() when TCP connected
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
        """The failure for the deadline hitting the current stage."""
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


@dataclass(slots=True)
class Stream:
    """An open connection: asyncio streams plus what the handshake told."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: str
    tls_version: str | None = None

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        # asyncio's get_extra_info is typed Any; "ssl_object" is an SSLObject or None.
        return cast("ssl.SSLObject | None", self.writer.get_extra_info("ssl_object"))

    def close(self) -> None:
        # abort(): the socket closes at once, without a close_notify
        # exchange or waiting on a slow peer.
        self.writer.transport.abort()


def format_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def resolve_timed(host: str, port: int, progress: Progress,
                        family: IpFamily = "any") -> list[str]:
    """:func:`~monitor.net.resolve.resolve`, timed into ``dns`` (not for literals)."""
    progress.stage = "dns"
    progress.lookup = Lookup()
    started = time.monotonic()
    try:
        addresses = await resolve(host, port, family, progress.lookup)
    finally:  # failed or cut short, the time was spent in this phase
        progress.phase("dns", time.monotonic() - started)
    if progress.trace_on:
        progress.trace(f"* dns {host} -> {', '.join(addresses)} "
                       f"({ms(time.monotonic() - started)})")
    return addresses


async def tcp_connect(addresses: list[str], port: int, progress: Progress,
                      limit: int = READ_SIZE
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Connect to the first of ``addresses`` that accepts, in order, timed into
    ``connect``. When all fail, the first address's reason wins."""
    progress.stage = "connect"
    started = time.monotonic()
    failures: list[ProbeFailure] = []
    try:
        for address in addresses:
            try:
                if progress.stamp_connect:
                    reader, writer = await _open(address, port, limit, progress)
                else:
                    reader, writer = await asyncio.open_connection(address, port, limit=limit)
            except OSError as exc:  # TimeoutError is ETIMEDOUT here: the kernel gave up
                failure = classify(exc, "connect", format_address(address, port))
                if failure.reason == "error":  # ours: the other addresses would fail too
                    raise failure from None
                failures.append(failure)
            else:
                if progress.trace_on:  # not even the f-string when nobody reads it
                    progress.trace(f"* connected to {format_address(address, port)} "
                                   f"({ms(time.monotonic() - started)})")
                return reader, writer, address
    finally:
        ended = progress.connected_at or time.monotonic()
        progress.phase("connect", ended - started)
    first = failures[0]
    if len(failures) == 1:
        raise first
    raise ProbeFailure(first.reason, "; ".join(f.detail for f in failures))


async def _open(address: str, port: int, limit: int, progress: Progress
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection to an IP address, with the moment the kernel
    said "connected" stamped into ``progress.connected_at``.

    Why not open_connection alone: its await spans about three loop
    iterations after the socket turns writable, so with 200 connects of a
    burst step in flight each one's connect time carried the others' CPU
    (connect p99 +9 ms against a step of 20, issue 12); the writability
    callback runs within one iteration of the event. Only where asked
    (``Progress.stamp_connect``): under uvloop it costs about 0.02 ms of CPU
    a connect over uvloop's own (C) connect, 10-15 % of an http run
    (same-run A/B, 2 cores, 1000 runs/s), which a single connect's timing
    does not need.
    """
    loop = asyncio.get_running_loop()
    progress.connected_at = None
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
        code = sock.connect_ex((address, port))
        if code == errno.EINPROGRESS:
            writable: asyncio.Future[float] = loop.create_future()

            def on_writable() -> None:
                if not writable.done():
                    writable.set_result(time.monotonic())

            loop.add_writer(sock.fileno(), on_writable)
            try:
                stamp = await writable
            finally:
                loop.remove_writer(sock.fileno())
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        else:
            stamp = time.monotonic()
        if code:
            # OSError(errno, ...) is ConnectionRefusedError and friends, as from asyncio.
            raise OSError(code, os.strerror(code))
        progress.connected_at = stamp
        return await asyncio.open_connection(sock=sock, limit=limit)
    except BaseException:
        progress.connected_at = None
        sock.close()
        raise


async def handshake(writer: asyncio.StreamWriter, context: ssl.SSLContext,
                    server_name: str, progress: Progress) -> str | None:
    """The TLS handshake on an open stream, timed into ``tls``; the TLS version."""
    progress.stage = "tls"
    started = time.monotonic()
    try:
        await writer.start_tls(context, server_hostname=server_name)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        writer.transport.abort()
        raise classify(exc, "tls", progress.target) from None
    finally:
        progress.phase("tls", time.monotonic() - started)
    obj: Any = writer.get_extra_info("ssl_object")
    version: str | None = obj.version() if obj is not None else None
    if progress.trace_on and obj is not None:
        cipher = obj.cipher()
        progress.trace(f"* tls {version} {cipher[0] if cipher else ''} "
                       f"server_name={server_name} ({ms(time.monotonic() - started)})")
    return version


async def open_stream(host: str, port: int, progress: Progress, *, tls: TLSOptions | None,
                      use_tls: bool, connect_address: str | None = None,
                      server_name: str | None = None, alpn: tuple[str, ...] = (),
                      family: IpFamily = "any") -> Stream:
    """Resolve (unless ``connect_address``), connect and, with ``use_tls``, do
    the handshake (SNI and the name verified: ``server_name`` or ``host``)."""
    progress.target = format_address(host, port)
    progress.stage = "dns"
    context = client_context(tls, alpn) if use_tls else None  # bad files: before connecting
    if connect_address is not None:
        addresses = [connect_address]
    elif (literal := ip_literal(host)) is not None:  # no lookup, no dns phase
        if family != "any" and family != f"ipv{literal}":
            raise ProbeFailure("dns", f"{host} is an IPv{literal} address, but ip_family "
                                      f"is {family}")
        addresses = [host]
    else:
        addresses = await resolve_timed(host, port, progress, family)
    reader, writer, address = await tcp_connect(addresses, port, progress)
    version = None
    if context is not None:
        try:
            version = await handshake(writer, context, server_name or host, progress)
        except BaseException:
            writer.transport.abort()
            raise
    return Stream(reader, writer, address, version)


async def open_connection(host: str, port: int, *, timeout: float,
                          tls: TLSOptions | None = None, use_tls: bool = True,
                          ctx: RunContext | None = None, connect_address: str | None = None,
                          alpn: tuple[str, ...] = (), family: IpFamily = "any") -> Stream:
    """:func:`open_stream` bounded by ``timeout`` (the tls and tcp kinds).

    SNI and the name verified are ``tls.server_name`` or else ``host``.
    Raises ProbeFailure (dns, connect_refused, connect_timeout, tls,
    connection_reset, timeout, error). The caller closes the stream.
    """
    progress = Progress(ctx)
    try:
        async with asyncio.timeout(timeout):
            return await open_stream(host, port, progress, tls=tls, use_tls=use_tls,
                                     connect_address=connect_address,
                                     server_name=tls.server_name if tls else None,
                                     alpn=alpn, family=family)
    except TimeoutError:
        raise progress.timed_out(timeout) from None


__all__ = ["Progress", "Stream", "format_address", "handshake", "open_connection",
           "open_stream", "resolve_timed", "tcp_connect"]
