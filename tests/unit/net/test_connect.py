"""monitor.net: the resolver policy, ip_family and the TLS context cache, on 127.0.0.1/::1."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

from monitor.config.common import TLSOptions
from monitor.net import tlsctx
from monitor.net.connect import Progress, open_connection, tcp_connect
from monitor.net.resolve import resolve
from monitor.probes.base import ProbeFailure


@asynccontextmanager
async def listening(host: str) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


# asyncio's own connect, and the one stamped at the kernel's "connected" (burst).
CONNECTS = [pytest.param(False, id="asyncio-connect"), pytest.param(True, id="stamped")]


@pytest.mark.parametrize("stamp", CONNECTS)
async def test_the_addresses_are_tried_in_order_until_one_accepts(stamp: bool) -> None:
    """127.0.0.2 refuses (the server listens on 127.0.0.1 only): not a retry, nothing
    was sent; the connect goes on to the next address within the same deadline."""
    async with listening("127.0.0.1") as port:
        progress = Progress(stamp_connect=stamp)
        _, writer, address = await tcp_connect(["127.0.0.2", "127.0.0.1"], port, progress)
        writer.write(b"x")  # a usable stream either way
        await writer.drain()
        writer.transport.abort()
    assert address == "127.0.0.1"
    assert set(progress.phases) == {"connect"}
    assert progress.phases["connect"] > 0
    assert (progress.connected_at is not None) is stamp


@pytest.mark.parametrize("stamp", CONNECTS)
async def test_when_every_address_fails_the_first_reason_wins_and_all_are_listed(
        stamp: bool) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProbeFailure) as caught:
        await tcp_connect(["127.0.0.2", "127.0.0.3"], port, Progress(stamp_connect=stamp))
    assert caught.value.reason == "connect_refused"
    assert "127.0.0.2" in caught.value.detail and "127.0.0.3" in caught.value.detail


async def test_ip_family_filters_what_a_name_resolves_to() -> None:
    assert await resolve("localhost", 80, "ipv4") == ["127.0.0.1"]
    assert await resolve("::1", 80, "ipv6") == ["::1"]
    with pytest.raises(ProbeFailure) as wrong_literal:
        await resolve("::1", 80, "ipv4")
    assert wrong_literal.value.reason == "dns"
    assert "ip_family is ipv4" in wrong_literal.value.detail
    with pytest.raises(ProbeFailure) as nxdomain:
        await resolve("no-such-host.invalid", 80)
    assert nxdomain.value.reason == "dns"


async def test_an_ipv6_listener_is_reached_with_ip_family_ipv6() -> None:
    async with listening("::1") as port:
        stream = await open_connection("::1", port, timeout=2, use_tls=False, family="ipv6")
        stream.close()
    assert stream.address == "::1"


def test_contexts_are_shared_and_a_replaced_ca_file_reloads(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    options = TLSOptions(ca_file=ca_file)
    first = tlsctx.client_context(options)
    assert tlsctx.client_context(TLSOptions(ca_file=ca_file, server_name="x.test")) is first
    assert tlsctx.client_context(options, alpn=()) is not first  # ALPN is part of the key
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    stat = ca_file.stat()
    os.utime(ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert tlsctx.client_context(options) is not first
    ca_file.unlink()
    with pytest.raises(ProbeFailure) as gone:
        tlsctx.client_context(options)
    assert gone.value.reason == "tls" and "cannot load ca_file" in gone.value.detail


def test_a_context_class_is_part_of_the_key(tmp_path: Path) -> None:
    """A kind whose drivers run TLS (sql) asks for its own SSLContext subclass: it gets
    an instance of it, cached like the others, never the default-class context of the
    same files (so nothing is changed on a context another kind uses), verifying as asked."""
    class Timed(ssl.SSLContext):
        sslobject_class = ssl.SSLObject

    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    options = TLSOptions(ca_file=ca_file)
    plain = tlsctx.client_context(options, ())
    timed = tlsctx.client_context(options, (), context_class=Timed)
    assert isinstance(timed, Timed) and type(plain) is ssl.SSLContext
    assert tlsctx.client_context(options, (), context_class=Timed) is timed
    assert (timed.verify_mode, timed.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert len(timed.get_ca_certs()) == 1  # only ca_file, as for the default class
    skip = tlsctx.client_context(TLSOptions(insecure_skip_verify=True), (), context_class=Timed)
    assert (skip.verify_mode, skip.check_hostname) == (ssl.CERT_NONE, False)
