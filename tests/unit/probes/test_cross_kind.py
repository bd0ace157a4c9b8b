"""The same condition gives the same reason in every kind.

Seven kinds (http, lb, tcp with send/expect, burst in url mode, journey with an
http step and with a ws_connect step, tls, sql with each driver) against the same
misbehaving servers on 127.0.0.1:

    refused          nothing listens on the port
    reset            accepts, then resets at once (SO_LINGER 0), from a thread with a
                     blocking accept: the reset then often lands before the client's
                     connect completes, the case that was reported connect_refused
    hang             accepts, reads, never answers
    tls_garbage      accepts and answers a TLS client with bytes that are not TLS
    nxdomain         the host is a name under .invalid (RFC 6761: never resolves)
    eof              accepts, reads what the client sends, closes before answering

One reason per condition; a kind to which a condition does not apply is
left out of its row (tcp and sql speak no TLS to the garbage server here).
The one exception, written here on purpose: for sql a hang after the TCP
connect is ``connect_timeout``, since a database connect ends with the
session (sql's own contract: no greeting is a connect that did not finish,
what an application's connect timeout sees). For sql with the mysql driver the
eof server, which reads before it closes, is that same hang: a MySQL client waits
for the server's greeting, the server waits for the client (docs/probes/sql.md).
sql resolves, connects and classifies what the network did through monitor.net
like the others; its drivers' "connection lost" errors are judged by the
network error they carry.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Result
from monitor.redact import Redactor
from monitor.runner import run_once

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
NXDOMAIN = "no-such-host.invalid"


def reset_forever(listener: socket.socket) -> None:
    """Accept and reset every connection until ``listener`` is closed."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST, not FIN


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"this is not TLS at all\r\n" * 8)
    await writer.drain()
    await hang(reader, writer)


async def eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)  # the request (or a ClientHello, or a startup packet)
    writer.close()  # FIN before any answer


HANDLERS: dict[str, Handler] = {"hang": hang, "tls_garbage": garbage, "eof": eof}


@asynccontextmanager
async def target(condition: str) -> AsyncIterator[tuple[str, int]]:
    if condition == "nxdomain":
        yield NXDOMAIN, 80
        return
    if condition == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield "127.0.0.1", port
        return
    if condition == "reset":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        thread = threading.Thread(target=reset_forever, args=(listener,), daemon=True)
        thread.start()
        try:
            yield "127.0.0.1", listener.getsockname()[1]
        finally:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocking accept
            listener.close()
            thread.join(5)
        return
    tasks: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await HANDLERS[condition](reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            tasks.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def config(kind: str, host: str, port: int, tls: bool) -> dict[str, Any]:
    scheme = "https" if tls else "http"
    url = f"{scheme}://{host}:{port}/health"
    base = {"name": f"x-{kind}", "kind": kind, "interval": "5m", "timeout": "1s"}
    if kind == "http":
        return {**base, "url": url}
    if kind == "lb":
        return {**base, "url": url, "requests": 1, "concurrency": 1}
    if kind == "tcp":
        return {**base, "target": f"{host}:{port}", "send": "PING\r\n", "expect": "PONG"}
    if kind == "burst":
        return {**base, "url": url, "steps": [2], "step_timeout": "1s",
                "slow_threshold": "500ms", "timeout": "2s"}
    if kind == "journey":
        return {**base, "steps": [{"name": "get", "http": {"url": url}}]}
    if kind == "journey_ws":  # the WebSocket steps stay on aiohttp: the same reasons
        ws = url.replace("http", "ws", 1)
        return {**base, "kind": "journey", "steps": [{"name": "up", "ws_connect": {"url": ws}}]}
    if kind == "tls":
        return {**base, "target": f"{host}:{port}"}
    assert kind in ("sql", "sql_mysql")
    return {**base, "kind": "sql", "driver": "postgres" if kind == "sql" else "mysql",
            "host": host, "port": port, "user": "monitor", "password": "not-a-secret",
            "database": "app", "app_timeout": "500ms"}


KINDS = ("http", "lb", "tcp", "burst", "journey", "journey_ws", "tls", "sql", "sql_mysql")
NO_TLS = ("tcp", "sql", "sql_mysql")
EXPECTED = {
    "refused": "connect_refused",
    "reset": "connection_reset",
    "hang": "timeout",
    "tls_garbage": "tls",
    "nxdomain": "dns",
    "eof": "connection_reset",
}
EXCEPTIONS = {("hang", "sql"): "connect_timeout", ("hang", "sql_mysql"): "connect_timeout",
              ("eof", "sql_mysql"): "connect_timeout"}
CASES = [(condition, kind) for condition in EXPECTED for kind in KINDS
         if not (condition == "tls_garbage" and kind in NO_TLS)]
PROBE_CONFIG = PROBE_KINDS  # one probe mapping -> its kind's model


async def run(kind: str, condition: str) -> Result:
    async with target(condition) as (host, port):
        cfg = PROBE_CONFIG.validate(config(kind, host, port,
                                                  tls=condition == "tls_garbage"), {})
        probe = build_probe(cfg)
        try:
            return await run_once(probe, redactor=Redactor())
        finally:
            await probe.close()


@pytest.mark.parametrize(("condition", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
async def test_one_reason_per_condition(condition: str, kind: str) -> None:
    result = await run(kind, condition)
    expected = EXCEPTIONS.get((condition, kind), EXPECTED[condition])
    assert (result.ok, result.reason) == (False, expected), result.detail


@pytest.mark.parametrize("kind", KINDS)
async def test_accept_then_reset_is_never_refused(kind: str) -> None:
    """Issue 14's verified bug: the reset lands at connect or after it depending on
    timing (before the fix, 198 of 200 http fetches against this server were
    connect_refused); every run must be connection_reset."""
    reasons = {(await run(kind, "reset")).reason for _ in range(15)}
    assert reasons == {"connection_reset"}
