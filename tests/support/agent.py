"""Test glue for the journey probe: the demo's agent service on 127.0.0.1, and a
server that resets every connection after reading a request.

The agent itself lives in ``monitor.demo.agent`` (``monitor demo`` serves the
same module); this only starts it on a free loopback port.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from monitor.demo.agent import AGENT, AgentFaults, AgentState, agent_app

__all__ = ["AgentServer", "ResetServer", "reset_server", "serve_agent", "silent_server"]


@dataclass
class AgentServer:
    url: str  # http://127.0.0.1:PORT
    ws_url: str  # ws://127.0.0.1:PORT/ws
    state: AgentState

    @property
    def faults(self) -> AgentFaults:
        return self.state.faults


@asynccontextmanager
async def serve_agent(faults: AgentFaults | None = None, *,
                      ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[AgentServer]:
    """The agent on a free port; https and wss when ``ssl_context`` is given."""
    app = agent_app(faults)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        http, ws = ("https", "wss") if ssl_context else ("http", "ws")
        yield AgentServer(f"{http}://127.0.0.1:{port}", f"{ws}://127.0.0.1:{port}/ws",
                          app[AGENT])
    finally:
        await runner.cleanup()


@dataclass
class ResetServer:
    url: str
    requests: int = 0


@asynccontextmanager
async def reset_server() -> AsyncIterator[ResetServer]:
    """Reads each request head, then resets the connection (RST) without answering."""
    state = ResetServer(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        state.requests += 1
        sock = writer.get_extra_info("socket")
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers; yields its http:// URL."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # held open until the test ends

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
