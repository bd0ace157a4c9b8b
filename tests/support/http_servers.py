"""Real HTTP(S) servers on 127.0.0.1 for tests, and certificates for them.

- :func:`serve_app` starts an aiohttp app on ``127.0.0.1:0`` (optionally
  with TLS) and yields a :class:`Served` with its ``url``; it counts the
  TCP connections the server accepted (``connections``), so a test can
  prove that nothing was retried.
- :func:`serve_raw` starts an ``asyncio.start_server`` whose handler gets
  the raw streams: servers that misbehave below HTTP (never answer, close
  at once, send garbage).
- :class:`Certs` wraps a trustme CA: server contexts for given names and
  validity, the CA as a file for ``ca_file``; :func:`self_signed` makes a
  certificate that is its own issuer.

Everything binds 127.0.0.1 only and is closed when the context exits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiohttp import web

__all__ = ["Certs", "RawHandler", "Served", "read_head", "self_signed", "serve_app", "serve_raw"]

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Served:
    """A running test server."""

    port: int
    scheme: str
    host: str = "127.0.0.1"
    connections: int = 0  # TCP connections accepted so far
    requests: list[web.Request] = field(default_factory=list)  # serve_app only

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


@asynccontextmanager
async def serve_app(app: web.Application, *, ssl_context: ssl.SSLContext | None = None,
                    ) -> AsyncIterator[Served]:
    """Run ``app`` on 127.0.0.1 with a free port; yield its :class:`Served`.

    Every request is appended to ``served.requests`` (headers readable
    after the handler ran), and every accepted connection counted.
    """
    served = Served(port=0, scheme="https" if ssl_context else "http")

    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:  # noqa: E501
        served.requests.append(request)
        return await handler(request)

    app.middlewares.append(record)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    counting = _counting_factory(runner.server, served)
    server = await loop.create_server(counting, "127.0.0.1", 0, ssl=ssl_context)
    served.port = server.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        server.close()
        await runner.cleanup()
        await server.wait_closed()


def _counting_factory(factory: Callable[[], asyncio.BaseProtocol] | None, served: Served,
                      ) -> Callable[[], asyncio.BaseProtocol]:
    assert factory is not None

    def make() -> asyncio.BaseProtocol:
        served.connections += 1
        return factory()

    return make


@asynccontextmanager
async def serve_raw(handler: RawHandler, *, ssl_context: ssl.SSLContext | None = None,
                    ) -> AsyncIterator[Served]:
    """Run ``handler(reader, writer)`` for every connection on 127.0.0.1:0."""
    served = Served(port=0, scheme="https" if ssl_context else "http")
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.connections += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            tasks.discard(task)
            writer.transport.abort()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=ssl_context)
    served.port = server.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """Read one request head (up to the blank line) for raw handlers."""
    return await reader.readuntil(b"\r\n\r\n")


class Certs:
    """A throwaway CA (trustme) and the server certificates it issues."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        self.ca_file = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self, *names: str, not_before: dt.datetime | None = None,
                       not_after: dt.datetime | None = None) -> ssl.SSLContext:
        """A server context with a certificate for ``names`` (default 127.0.0.1)."""
        leaf = self.ca.issue_cert(*(names or ("127.0.0.1", "localhost")),
                                  not_before=not_before, not_after=not_after)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def self_signed(tmp_path: Path, name: str = "127.0.0.1") -> tuple[ssl.SSLContext, Path]:
    """A server context whose certificate is its own issuer, and that
    certificate as a PEM file (to trust it through ``ca_file``).

    Built with ``cryptography`` (a dependency of trustme)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "self-signed.pem"
    key_file = tmp_path / "self-signed.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
