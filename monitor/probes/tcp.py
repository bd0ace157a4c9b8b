"""`kind: tcp`: can a TCP connection be opened, and does the peer answer?

One run resolves the target (filtered by ``ip_family``), connects through
:mod:`monitor.net` (the addresses in resolver order until one accepts: the
one resolver policy of every kind, not a retry, since nothing was sent),
optionally writes ``send`` and reads until the answer matches ``expect`` /
``expect_regex``, then closes. Phases (``dns``, ``connect``, ``answer``) go
to the trace and ``/api/status``; there is no tcp phase metric
(``monitor_probe_duration_seconds`` covers the run).

Failure reasons:

- ``dns``: the host does not resolve (or not within the timeout).
- ``connect_refused``: the peer (or the network) refused the connection.
- ``connect_timeout``: no handshake within the timeout (a lost SYN, a
  filtered port, a saturated path).
- ``connection_reset``: reset (also when the peer accepted and reset at
  once), or closed before sending anything, while we wrote or waited for
  the answer.
- ``assertion``: an answer came but did not match (the whole answer when
  the peer closed, or ``max_read_bytes`` of it).
- ``timeout``: connected, but no answer at all within the timeout.
"""

from __future__ import annotations

import asyncio
import re
import time

from monitor.config.tcp import TcpProbeConfig
from monitor.config.types import split_host_port
from monitor.net.connect import Progress, format_address, open_stream
from monitor.net.errors import classify
from monitor.probes.base import Probe, ProbeFailure, Result, RunContext

# Bytes of an unexpected answer shown in the detail.
PREVIEW_BYTES = 64
# A graceful close that takes longer than this is aborted instead.
CLOSE_SECONDS = 1.0


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
        progress = Progress(ctx)
        try:
            async with asyncio.timeout_at(deadline):
                stream = await open_stream(host, port, progress, tls=None, use_tls=False,
                                           family=config.ip_family)
        except TimeoutError:
            raise progress.timed_out(config.timeout) from None
        reader, writer = stream.reader, stream.writer
        where = format_address(stream.address, port)
        connect = progress.phases.get("connect", 0.0)
        ctx.trace(f"connected to {where} in {connect * 1000:.1f} ms")

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
            raise classify(exc, "receive", where) from None
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
