"""A TCP echo server and a TCP proxy that misbehave on demand.

Both stand in for a Serverless VPC Access connector, which is a few small
VMs that saturate on concurrency and throughput: connections beyond what it
can carry wait and then get reset, latency creeps, transfers slow down.
``Faults`` says what to inject; change it at run time with ``set_faults``
(``monitor demo`` switches saturation on and off; the tests start one per
case). One implementation serves both: ``EchoServer`` echoes every byte
back itself, ``FaultProxy`` relays to an upstream.

Faults:

- ``cap``: connections served at once. One beyond the cap waits up to
  ``hold`` seconds for a slot (``None``: as long as it takes), then is
  reset (a TCP RST).
- ``latency``: seconds each admitted connection waits before its bytes
  start to flow.
- ``bandwidth``: bytes per second for all connections and both directions
  together (a token bucket; chunks are small so connections share it).
- ``reset_ratio``: the share of admitted connections reset at once (drawn
  from ``random.Random(seed)``, so a test can repeat it).

Everything listens on the host it is given (tests and the demo use
127.0.0.1) and every accepted socket is counted, so a test can see that a
client closed all of its connections (``open_connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any

# Read size of the relays: small, so that a bandwidth cap is shared fairly.
CHUNK = 4096
# A burst opens up to 200 connections at once; the default backlog (100)
# would make the kernel drop SYNs, which is a fault we did not ask for.
BACKLOG = 1024
# How long a relay waits for the other direction after one side closed.
DRAIN_SECONDS = 10.0


@dataclass(frozen=True)
class Faults:
    cap: int | None = None
    hold: float | None = 0.0
    latency: float = 0.0
    bandwidth: float | None = None
    reset_ratio: float = 0.0
    seed: int | None = None


class TokenBucket:
    """A shared rate limit: every taker reserves its bytes and waits its turn."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._last: float | None = None

    async def take(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._last is not None:
            # At most 10 ms worth of idle credit, so a pause does not buy a burst.
            self._tokens = min(self.rate * 0.01, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a saturated middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultServer:
    """What the echo server and the proxy share: admission, faults, bookkeeping."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._random = random.Random(self.faults.seed)
        self._bucket = TokenBucket(self.faults.bandwidth) if self.faults.bandwidth else None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        # Bookkeeping the tests and the demo read.
        self.active = 0  # connections holding a slot
        self.peak_active = 0
        self.open_connections = 0  # accepted and not yet closed
        self.accepted = 0
        self.rejected = 0  # over the cap for longer than `hold`
        self.reset_count = 0  # reset by reset_ratio
        self.port = 0

    # -- life cycle -------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, host, port, backlog=BACKLOG)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def set_faults(self, **changes: Any) -> None:
        """Change faults while running (``set_faults(cap=20)``, ``set_faults(cap=None)``)."""
        unknown = set(changes) - {f.name for f in fields(Faults)}
        if unknown:
            raise TypeError(f"unknown faults: {sorted(unknown)}")
        self.faults = replace(self.faults, **changes)
        if "seed" in changes:
            self._random = random.Random(self.faults.seed)
        rate = self.faults.bandwidth
        if rate != (self._bucket.rate if self._bucket else None):
            self._bucket = TokenBucket(rate) if rate else None
        # A raised (or removed) cap admits the waiting connections.
        while self._waiters and (self.faults.cap is None or self.active < self.faults.cap):
            if self._grant():
                self.active += 1

    # -- admission --------------------------------------------------------
    def _grant(self) -> bool:
        """Hand a slot to the oldest live waiter; False when none is left."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    async def _admit(self) -> bool:
        cap = self.faults.cap
        if cap is None or self.active < cap:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            return True
        hold = self.faults.hold
        if hold is not None and hold <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(hold):
                await waiter
        except TimeoutError:
            # A slot handed over in the same instant still counts.
            return waiter.done() and not waiter.cancelled()
        return True  # the releasing connection passed its slot on: active unchanged

    def _release(self) -> None:
        if self.faults.cap is not None and self.active <= self.faults.cap and self._grant():
            return
        self.active -= 1

    # -- connections ------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.accepted += 1
        self.open_connections += 1
        try:
            if not await self._admit():
                self.rejected += 1
                reset(writer)
                return
            try:
                if self.faults.reset_ratio and self._random.random() < self.faults.reset_ratio:
                    self.reset_count += 1
                    reset(writer)
                    return
                if self.faults.latency:
                    await asyncio.sleep(self.faults.latency)  # the injected fault itself
                await self.serve(reader, writer)
            finally:
                self._release()
        except (ConnectionError, OSError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # Shutting down (close()): asyncio's stream callback would log a
            # cancelled handler as an error.
            writer.transport.abort()
        finally:
            writer.close()
            self._writers.discard(writer)
            self.open_connections -= 1
            self._tasks.discard(task)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy until EOF, through the bandwidth cap; then half-close ``writer``."""
        while chunk := await reader.read(CHUNK):
            if self._bucket is not None:
                await self._bucket.take(len(chunk))
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()


class EchoServer(FaultServer):
    """Writes every byte it reads back to the sender."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.pipe(reader, writer)


class FaultProxy(FaultServer):
    """Relays to ``upstream`` (host, port), injecting the faults on the way."""

    def __init__(self, upstream: tuple[str, int], faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.upstream = upstream

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            reset(writer)  # what a proxy whose upstream is down looks like
            return
        try:
            outbound = asyncio.create_task(self.pipe(reader, up_writer))
            inbound = asyncio.create_task(self.pipe(up_reader, writer))
            done, _ = await asyncio.wait({outbound, inbound},
                                         return_when=asyncio.FIRST_COMPLETED)
            if outbound in done and outbound.exception() is None:
                # The client finished sending: let the answer drain, bounded.
                await asyncio.wait({inbound}, timeout=DRAIN_SECONDS)
            for task in (outbound, inbound):
                task.cancel()
            await asyncio.gather(outbound, inbound, return_exceptions=True)
            for task in (outbound, inbound):
                if not task.cancelled() and isinstance(task.exception(), ConnectionError):
                    reset(writer)  # pass a reset on, as a proxy does
        finally:
            up_writer.transport.abort()
