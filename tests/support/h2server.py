"""An HTTP/2 server on 127.0.0.1 (TLS, ALPN h2) that misbehaves on purpose.

Built on the same ``h2`` state machine, server side (its documented asyncio
server pattern: feed bytes, act on RequestReceived, write data_to_send()),
for what real servers do only under faults: resetting our stream, GOAWAY
before answering, closing mid-body, answering with what is not HTTP/2.
nginx (tests/integration) covers the well-behaved server.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import trustme
from hyperframe.frame import GoAwayFrame

BODY = b"h2 ok\n"


@dataclass
class H2Server:
    port: int
    ca_file: Path
    requests: list[list[tuple[str, str]]]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"


async def _handle(behaviour: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  seen: list[list[tuple[str, str]]]) -> None:
    if behaviour == "not-h2":  # ALPN said h2, the bytes are HTTP/1.1
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()
        return
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    seen.append([(str(n), str(v)) for n, v in event.headers or []])
                    if await _answer(behaviour, conn, writer, event.stream_id or 1):
                        return
            writer.write(conn.data_to_send())
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.transport.abort()


async def _answer(behaviour: str, conn: h2.connection.H2Connection,
                  writer: asyncio.StreamWriter, stream: int) -> bool:
    """Act on the request; True when the connection is to be dropped now."""
    head = [(":status", "200"), ("content-type", "text/plain")]
    if behaviour == "ok":
        conn.send_headers(stream, head)
        conn.send_data(stream, BODY, end_stream=True)
    elif behaviour == "rst":
        conn.reset_stream(stream, h2.errors.ErrorCodes.REFUSED_STREAM)
    elif behaviour == "goaway":
        conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=0)
    elif behaviour == "graceful-goaway":  # GOAWAY NO_ERROR, our stream still answered
        conn.send_headers(stream, head)
        writer.write(conn.data_to_send())
        # Written by hand: h2 itself sends nothing more after its own GOAWAY.
        writer.write(GoAwayFrame(0, last_stream_id=stream, error_code=0).serialize())
        conn.send_data(stream, BODY, end_stream=True)
    elif behaviour == "close-mid-body":
        conn.send_headers(stream, [*head, ("content-length", "100")])
        conn.send_data(stream, b"x" * 10)
        writer.write(conn.data_to_send())
        await writer.drain()
        return True
    elif behaviour == "wrong-length":  # content-length 100, 10 bytes, END_STREAM
        conn.send_headers(stream, [*head, ("content-length", "100")])
        conn.send_data(stream, b"x" * 10, end_stream=True)
    elif behaviour == "silent":  # headers, then nothing
        conn.send_headers(stream, head)
    else:
        raise ValueError(behaviour)
    writer.write(conn.data_to_send())
    await writer.drain()
    return False


@asynccontextmanager
async def serve_h2(tmp_path: Path, behaviour: str, alpn: bool = True
                   ) -> AsyncIterator[H2Server]:
    """The server; without ``alpn`` it selects no protocol (an ALPN-unaware server)."""
    ca = trustme.CA()
    ca_file = tmp_path / "h2-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if alpn:
        context.set_alpn_protocols(["h2"])
    seen: list[list[tuple[str, str]]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await _handle(behaviour, reader, writer, seen)
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield H2Server(port, ca_file, seen)
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()
