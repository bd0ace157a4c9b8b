"""The daemon's listening side: a connection cap, timeouts, quiet logs.

What aiohttp (3.14) gives and is used as is:

- ``keepalive_timeout``: one timer from a connection's opening, and from
  the end of each response, to the next complete request head. It is the
  header-read timeout (a slowloris head is cut) and the idle keep-alive
  timeout in one (``HEADER_TIMEOUT``);
- ``lingering_time=0``: a request body nobody reads is not drained for
  10 s after the answer (that delayed SIGTERM); the connection closes;
- ``max_line_size``/``max_field_size``/``max_headers``: its defaults;
- ``shutdown_timeout``: how long requests in flight get on stop.

What aiohttp has no knob for, owned here in :class:`Gate`, a protocol
factory for ``loop.create_server``:

- a cap on concurrent connections. Past the cap the connection idle
  longest (one that owes us a request head) is closed to make room, so a
  flood of idle connections cannot lock out Prometheus; only when every
  connection is busy with a request is the newcomer refused at once
  (plain HTTP: a 503; TLS: closed). Nothing waits in a queue;
- the TLS handshake, done here (bounded by ``HEADER_TIMEOUT``) rather
  than by asyncio's server, which calls the protocol factory before the
  handshake and never shows the socket: a connection that never finishes
  its handshake counts against the cap and can be closed;
- a deadline for a request (``REQUEST_TIMEOUT``, head to response
  written): a client that does not read its answer is cut off.

Malformed requests are answered 400 by aiohttp; :class:`QuietServerLog`
turns its log lines for them into one warning a minute without a
traceback. Errors of the event loop itself (the accept loop out of file
descriptors) are throttled the same way by :func:`throttled_loop_errors`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from monitor.logs import Throttle

log = structlog.get_logger("monitor.httpd")

# A connection must deliver a complete request head within this of
# opening (or of its previous response); also the TLS handshake's bound.
HEADER_TIMEOUT = 10.0
# From a complete request head to the response written (a /metrics scrape
# takes milliseconds; Prometheus' own scrape timeout is at most 10 s).
REQUEST_TIMEOUT = 30.0
# Requests in flight when the daemon stops get this long (SIGTERM must
# end within 3 s; Cloud Run allows 10).
SHUTDOWN_GRACE = 0.5
# A connection takes one file descriptor; probes need most of the rest.
FDS_PER_CONNECTION_SLOT = 8
MIN_CONNECTIONS = 8
SWEEP_SECONDS = 1.0
# Bytes kept for a connection in its TLS hand-over (a request head's worth).
EARLY_BYTES = 64 * 1024
# A refused connection is drained this long after its 503; at most this many at once.
REFUSAL_LINGER = 1.0
MAX_LINGERING = 64

_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 21\r\n\r\n"
            b"too many connections\n")


def connection_cap(configured: int, fd_limit: int | None = None) -> int:
    """``server.max_connections``, lowered to leave most file descriptors to probes."""
    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if fd_limit == resource.RLIM_INFINITY or fd_limit <= 0:
        return configured
    return max(MIN_CONNECTIONS, min(configured, fd_limit // FDS_PER_CONNECTION_SLOT))


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (as Go programs do); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an unlimited soft limit for files; 2^20 is its default ceiling.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


@dataclass(eq=False, slots=True)
class _Connection:
    transport: asyncio.Transport  # the TCP transport (under TLS too)
    since: float  # opened, or its last response written
    handler: web.RequestHandler | None = None  # None during the TLS handshake
    busy_since: float | None = None  # in a request since then
    served: int = 0  # requests answered on it


class _Accepted(asyncio.Protocol):
    """The protocol of one accepted connection: admitted or refused by the
    gate, then everything is passed on to aiohttp's RequestHandler."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.connection: _Connection | None = None
        self.refused = False  # refused: what arrives is dropped
        # Bytes that came before the hand-over: TLS delivers the first request
        # as soon as the handshake ends, before start_tls() returns to us.
        self.early = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not derive from asyncio.Transport.
        self.gate._admit(self, cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        if self.connection is not None and self.connection.handler is not None:
            self.connection.handler.data_received(data)
        elif not self.refused and len(self.early) < EARLY_BYTES:
            self.early += data

    def eof_received(self) -> bool | None:
        if self.connection is not None and self.connection.handler is not None:
            self.connection.handler.eof_received()  # aiohttp's returns None: close on EOF
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        connection = self.connection
        if connection is not None:
            self.gate._forget(connection)
            if connection.handler is not None:
                connection.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.connection is not None and self.connection.handler is not None:
            self.connection.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.connection is not None and self.connection.handler is not None:
            self.connection.handler.resume_writing()


class Gate:
    """Protocol factory: caps connections, does TLS, times requests out."""

    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None,
                 request_timeout: float = REQUEST_TIMEOUT,
                 handshake_timeout: float = HEADER_TIMEOUT) -> None:
        # aiohttp's protocol factory, set once the runner is set up.
        self.server: web.Server | None = None
        self.max_connections = max_connections
        self._ssl = ssl_context
        self._request_timeout = request_timeout
        self._handshake_timeout = handshake_timeout
        self._connections: dict[_Connection, None] = {}  # oldest first
        self._by_handler: dict[web.RequestHandler, _Connection] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._throttle = Throttle()
        self._lingering = 0  # refused connections still being drained
        self.refused = 0
        self.evicted = 0

    def __call__(self) -> _Accepted:
        return _Accepted(self)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # -- admission ---------------------------------------------------------
    def _admit(self, protocol: _Accepted, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        if len(self._connections) >= self.max_connections and not self._evict_one():
            self.refused += 1
            self._note("connection refused: every connection is busy",
                       cap=self.max_connections)
            self._refuse(protocol, transport)
            return
        connection = _Connection(transport, loop.time())
        protocol.connection = connection
        self._connections[connection] = None
        if self._ssl is None:
            self._hand_over(protocol, connection, transport)
            return
        transport.pause_reading()  # the ClientHello waits for start_tls
        task = loop.create_task(self._handshake(protocol, connection))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def _refuse(self, protocol: _Accepted, transport: asyncio.Transport) -> None:
        """Plain HTTP: a 503 and a half-close, then what the client sent is
        read and dropped for a moment (closing on unread bytes would reset
        the connection and lose the 503). TLS, or too many of those: closed."""
        if self._ssl is not None or self._lingering >= MAX_LINGERING:
            transport.abort()
            return
        self._lingering += 1
        protocol.refused = True
        transport.write(_REFUSAL)
        transport.write_eof()

        def end() -> None:
            self._lingering -= 1
            transport.abort()

        asyncio.get_running_loop().call_later(REFUSAL_LINGER, end)

    def _evict_one(self) -> bool:
        """Close an idle connection; False when every one is busy.

        One that never carried a request goes first (a flood of idle
        connections), oldest first; a keep-alive one that did (Prometheus
        between scrapes) only after those.
        """
        idle = [c for c in self._connections if c.busy_since is None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.served > 0, c.since))
        self._forget(victim)
        victim.transport.abort()
        self.evicted += 1
        self._note("idle connection closed to make room", cap=self.max_connections)
        return True

    async def _handshake(self, protocol: _Accepted, connection: _Connection) -> None:
        assert self._ssl is not None
        loop = asyncio.get_running_loop()
        try:
            secure = await loop.start_tls(
                connection.transport, protocol, self._ssl, server_side=True,
                ssl_handshake_timeout=self._handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            self._forget(connection)
            connection.transport.abort()
            return
        if connection not in self._connections or secure is None:  # evicted meanwhile
            connection.transport.abort()
            return
        self._hand_over(protocol, connection, secure)

    def _hand_over(self, protocol: _Accepted, connection: _Connection,
                   transport: asyncio.Transport) -> None:
        assert self.server is not None, "Gate.server is set before serving"
        handler = self.server()
        connection.handler = handler
        connection.since = asyncio.get_running_loop().time()
        self._by_handler[handler] = connection
        handler.connection_made(transport)
        if protocol.early:
            early, protocol.early = bytes(protocol.early), bytearray()
            handler.data_received(early)

    def _forget(self, connection: _Connection) -> None:
        self._connections.pop(connection, None)
        if connection.handler is not None:
            self._by_handler.pop(connection.handler, None)

    # -- requests ------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                         ) -> web.StreamResponse:
        """Mark the connection busy until its response is written."""
        connection = self._by_handler.get(request.protocol)
        task = asyncio.current_task()
        if connection is not None and task is not None:
            loop = asyncio.get_running_loop()
            connection.busy_since = loop.time()

            def done(_: object) -> None:
                connection.busy_since = None
                connection.since = loop.time()
                connection.served += 1

            # aiohttp writes the response after the middlewares return, in this task.
            task.add_done_callback(done)
        return await handler(request)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = loop.time()
            for connection in list(self._connections):
                busy = connection.busy_since
                if busy is not None and now - busy > self._request_timeout:
                    self._note("request cut off: not done within the request timeout",
                               timeout=self._request_timeout)
                    self._forget(connection)
                    connection.transport.abort()

    def close(self) -> None:
        """Stop the sweeper and close connections still in their handshake
        (aiohttp's shutdown closes the others)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._handshakes):
            task.cancel()
        for connection in list(self._connections):
            if connection.handler is None:
                self._forget(connection)
                connection.transport.abort()

    def _note(self, event: str, **values: Any) -> None:
        held = self._throttle.allow(event)
        if held is not None:
            log.warning(event, held_back=held, **values)


class GatedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`Gate`."""

    __slots__ = ("_gate", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, gate: Gate, host: str, port: int) -> None:
        super().__init__(runner)
        self._gate = gate
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        sockets = getattr(self._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._gate, self._host or None, self._port, backlog=self._backlog,
            reuse_address=True)

    async def stop(self) -> None:
        await super().stop()  # stop accepting first
        self._gate.close()


async def start_server(app: web.Application, host: str, port: int, *,
                       ssl_context: ssl.SSLContext | None, max_connections: int,
                       header_timeout: float = HEADER_TIMEOUT,
                       request_timeout: float = REQUEST_TIMEOUT,
                       ) -> tuple[web.AppRunner, GatedSite]:
    """Serve ``app`` on host:port through a :class:`Gate`; the caller cleans the runner up.

    The timeouts are the module's constants; tests shorten them."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE,
        keepalive_timeout=header_timeout, lingering_time=0, logger=QuietServerLog(),
    )
    gate = Gate(max_connections=max_connections, ssl_context=ssl_context,
                request_timeout=request_timeout, handshake_timeout=header_timeout)
    app.middlewares.insert(0, gate.middleware)  # before the runner freezes the app
    await runner.setup()
    gate.server = runner.server
    site = GatedSite(runner, gate, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


class QuietServerLog(logging.Logger):
    """aiohttp's server logger, made safe against peers that misbehave.

    A malformed request (aiohttp answers 400) is logged as one warning a
    minute, without a traceback; other errors keep their traceback (they
    are bugs of ours) but are throttled too, per kind.
    """

    def __init__(self) -> None:
        super().__init__("aiohttp.server")
        self.parent = logging.getLogger()
        self.propagate = True
        self._throttle = Throttle()

    def handle(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.WARNING:
            return
        if isinstance(exc, HttpProcessingError):
            held = self._throttle.allow("malformed")
            if held is None:
                return
            # The first line only: aiohttp quotes the offending bytes below it.
            what = (str(exc.message or "").splitlines() or [type(exc).__name__])[0][:120]
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed request from %s answered %s: %s (%d more held back)"
            record.args = (remote, exc.code, what, held)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        else:
            held = self._throttle.allow(type(exc).__name__ if exc else str(record.msg))
            if held is None:
                return
            if held:
                record.msg = f"{record.msg} ({held} more held back)"
        super().handle(record)


def throttled_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Install an event-loop exception handler that logs each kind once a minute.

    asyncio's accept loop reports every failed accept (``socket.accept()
    out of system resource``), up to a backlog's worth per second.
    """
    throttle = Throttle()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "event loop error"))
        exc = context.get("exception")
        held = throttle.allow(message)
        if held is None:
            return
        if isinstance(exc, OSError):  # our resources: no traceback helps
            log.error(message, error=str(exc), held_back=held)
            return
        loop.default_exception_handler({**context, "message": f"{message} "
                                        f"({held} more held back)" if held else message})

    loop.set_exception_handler(handler)
