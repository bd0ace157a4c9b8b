"""`kind: tcp`: can a TCP connection be opened, and does the peer answer?

One run resolves the target once, opens one connection to the first address
(no fallback to the others: probes never retry), optionally writes ``send``
and reads until the answer matches ``expect`` / ``expect_regex``, then
closes. Phases (``dns``, ``connect``, ``answer``) go to the trace and
``/api/status``; there is no tcp phase metric (``monitor_probe_duration_seconds``
covers the run).

Failure reasons:

- ``dns``: the host does not resolve (or not within the timeout).
- ``connect_refused``: the peer (or the network) refused the connection.
- ``connect_timeout``: no handshake within the timeout (a lost SYN, a
  filtered port, a saturated path).
- ``connection_reset``: reset, or closed before sending anything, while
  we wrote or waited for the answer.
- ``assertion``: an answer came but did not match (the whole answer when
  the peer closed, or ``max_read_bytes`` of it).
- ``timeout``: connected, but no answer at all within the timeout.

The connection and DNS helpers here are shared with ``kind: burst``.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import time
from typing import Any

from monitor.config.tcp import TcpProbeConfig
from monitor.config.types import split_host_port
from monitor.probes.base import Probe, ProbeFailure, Reason, Result, RunContext
from monitor.probes.exhaustion import Lookup, executor_full, own_exhaustion

# Bytes of an unexpected answer shown in the detail.
PREVIEW_BYTES = 64
# A graceful close that takes longer than this is aborted instead.
CLOSE_SECONDS = 1.0

SockAddr = tuple[Any, ...]


async def resolve(host: str, port: int, timeout: float | None = None) -> list[SockAddr]:
    """Every TCP address of ``host``, in resolver order, within ``timeout``
    (raises ProbeFailure: dns, or error when the lookup never started)."""
    lookup = Lookup()
    try:
        async with asyncio.timeout(timeout):
            infos = await lookup.getaddrinfo(host, port)
    except TimeoutError:
        if not lookup.started:
            raise executor_full(host, timeout or 0.0) from None
        raise ProbeFailure("dns", f"no answer from the resolver for {host}") from None
    except socket.gaierror as exc:
        raise ProbeFailure("dns", f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError:
        raise ProbeFailure("dns", f"cannot resolve {host}: invalid name") from None
    if not infos:
        raise ProbeFailure("dns", f"cannot resolve {host}: no addresses")
    return [info[4] for info in infos]


def connect_failure(exc: BaseException, where: str) -> ProbeFailure:
    """The failure for an exception raised while connecting to ``where``."""
    own = own_exhaustion(exc, f"connecting to {where}")
    return own or ProbeFailure(connect_reason(exc), f"{where}: {describe(exc)}")


def connect_reason(exc: BaseException) -> Reason:
    """The failure reason of an exception raised while connecting (not ours)."""
    if isinstance(exc, TimeoutError):
        return "connect_timeout"
    if isinstance(exc, OSError) and exc.errno in (errno.ETIMEDOUT,):
        return "connect_timeout"
    if isinstance(exc, OSError):
        # Refused, or unreachable (an ICMP answer is a refusal by the network).
        return "connect_refused"
    return "error"


def transfer_reason(exc: BaseException) -> Reason:
    """The failure reason of an exception raised after the connection was open."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionError | OSError):
        return "connection_reset"
    return "error"


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a network exception."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"closed by the peer after {len(exc.partial)} of {exc.expected} bytes"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def format_address(sockaddr: SockAddr) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close gracefully, bounded; abort if the peer does not let go."""
    try:
        writer.close()
        async with asyncio.timeout(CLOSE_SECONDS):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


class TcpProbe(Probe[TcpProbeConfig]):
    config: TcpProbeConfig
    phase_metric = None  # docs/architecture.md has no tcp phase metric: phases stay in the result

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        host, port = split_host_port(config.target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout - ctx.elapsed()

        start = time.monotonic()
        addresses = await resolve(host, port, max(deadline - loop.time(), 0.0))
        ctx.phase("dns", time.monotonic() - start)
        address = addresses[0]
        where = format_address(address)
        ctx.trace(f"connect {where}")

        start = time.monotonic()
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(address[0], address[1])
        except (OSError, TimeoutError) as exc:
            raise connect_failure(exc, where) from None
        connect = time.monotonic() - start
        ctx.phase("connect", connect)
        ctx.trace(f"connected in {connect * 1000:.1f} ms")

        try:
            detail = await self._converse(ctx, reader, writer, deadline, where)
        finally:
            await close_writer(writer)
        return ctx.success(f"{where}: connected in {connect * 1000:.1f} ms{detail}")

    async def _converse(self, ctx: RunContext, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, deadline: float, where: str) -> str:
        """Send and expect; return the detail suffix, raise ProbeFailure."""
        config = self.config
        start = time.monotonic()
        received = b""
        try:
            async with asyncio.timeout_at(deadline):
                if config.send is not None:
                    writer.write(config.send.encode())
                    await writer.drain()
                    ctx.trace(f"sent {len(config.send.encode())} bytes")
                if config.expect is None and config.expect_regex is None:
                    return ""
                while not self._matches(received):
                    if len(received) >= config.max_read_bytes:
                        raise ProbeFailure("assertion", (
                            f"{where}: no match in the first {config.max_read_bytes} bytes: "
                            f"{_preview(received)}"))
                    chunk = await reader.read(config.max_read_bytes - len(received))
                    if not chunk:
                        if not received:
                            raise ProbeFailure("connection_reset",
                                               f"{where}: closed by the peer without an answer")
                        raise ProbeFailure("assertion", (
                            f"{where}: the answer does not match (peer closed): "
                            f"{_preview(received)}"))
                    received += chunk
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and received:
                raise ProbeFailure("assertion", (
                    f"{where}: no match within the timeout: {_preview(received)}")) from None
            reason = transfer_reason(exc)
            what = "no answer within the timeout" if reason == "timeout" else describe(exc)
            raise ProbeFailure(reason, f"{where}: {what}") from None
        answer = time.monotonic() - start
        ctx.phase("answer", answer)
        ctx.trace(f"answer matched after {len(received)} bytes")
        return f", answer matched in {answer * 1000:.1f} ms"

    def _matches(self, received: bytes) -> bool:
        config = self.config
        if config.expect is not None:
            return config.expect.encode() in received
        assert config.expect_regex is not None
        return _search(config.expect_regex, received)


def _search(pattern: re.Pattern[str], data: bytes) -> bool:
    return pattern.search(data.decode("latin-1")) is not None


def _preview(data: bytes) -> str:
    text = repr(data[:PREVIEW_BYTES])
    return text + ("..." if len(data) > PREVIEW_BYTES else "")
