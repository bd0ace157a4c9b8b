"""proxy_url and no_proxy: parsing, matching, the secret, and the proxy's failures
that tinyproxy (tests/integration/test_proxy_tinyproxy.py) cannot show: a proxy
that never answers CONNECT, closes before answering, or answers what is not HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from pydantic import TypeAdapter, ValidationError

from monitor.config.proxy import NoProxy, NoProxyList, ProxyURL, bypassed
from monitor.net.fetch import Request, fetch
from monitor.probes.base import ProbeFailure

NO_PROXY: TypeAdapter[tuple[NoProxy, ...]] = TypeAdapter(NoProxyList)


@pytest.mark.parametrize(("entries", "host", "direct"), [
    (["*"], "anything.test", True),
    (["example.com"], "example.com", True),
    (["example.com"], "api.example.com", True),
    (["example.com"], "EXAMPLE.COM.", True),
    (["example.com"], "badexample.com", False),
    ([".example.com"], "example.com", True),
    (["*.example.com"], "a.b.example.com", True),
    (["10.1.2.3"], "10.1.2.3", True),
    (["10.1.2.3"], "10.1.2.4", False),
    (["10.0.0.0/8"], "10.200.0.1", True),
    (["10.0.0.0/8"], "11.0.0.1", False),
    (["10.0.0.0/8"], "ten.example", False),
    (["::1"], "::1", True),
    (["fd00::/8"], "fd12::1", True),
    (["[::1]"], "[::1]", True),
    ("localhost, .internal", "db.internal", True),
    ("localhost, .internal", "example.com", False),
], ids=lambda v: str(v))
def test_no_proxy_matching(entries: object, host: str, direct: bool) -> None:
    """The NO_PROXY convention: *, a domain and everything under it, IPs and CIDR ranges
    of IP literals, matched on the URL's host; a comma-separated string is split."""
    assert bypassed(NO_PROXY.validate_python(entries), host) is direct


@pytest.mark.parametrize("entry", ["example.com:443", "10.0.0.0/33", "", "a b", "user@host"])
def test_bad_no_proxy_entries(entry: str) -> None:
    """Ports, bad ranges and what is not a host are config errors."""
    with pytest.raises(ValidationError):
        NO_PROXY.validate_python([entry])


def test_proxy_credentials_never_show() -> None:
    """userinfo becomes a Basic Proxy-Authorization value; str and repr hide it, and
    percent-escapes are undone (RFC 3986 userinfo)."""
    proxy = ProxyURL.parse("http://probe:p%40ss%3Aword@Proxy.example:3128")
    assert (proxy.host, proxy.port, proxy.address) == ("proxy.example", 3128,
                                                        "proxy.example:3128")
    assert proxy.authorization == "Basic cHJvYmU6cEBzczp3b3Jk"  # probe:p@ss:word
    for shown in (str(proxy), repr(proxy), repr([proxy])):
        assert "p%40ss" not in shown and "p@ss" not in shown and "cHJvYmU" not in shown
    assert str(proxy) == "http://***@proxy.example:3128"
    assert ProxyURL.parse("http://[::1]:3128").address == "[::1]:3128"


@pytest.mark.parametrize("url", ["https://p:3128", "socks5://p:1080", "http://p",
                                 "http://p:3128/path", "http://:3128", "http://p:99999",
                                 "http://${token}:3128", "http://p!q:3128"])
def test_bad_proxy_urls(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the messages: tests/config/invalid)
        ProxyURL.parse(url)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_proxy(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    await asyncio.sleep(5)  # never answers CONNECT (the client's deadline ends it)
    writer.close()


async def closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize(("handler", "reason", "words"), [
    (silent, "timeout", "did not answer CONNECT 127.0.0.1:9 within 0.3s"),
    (closes, "connection_reset", "closed the connection before answering CONNECT "
                                 "127.0.0.1:9"),
    (garbage, "protocol", "answered CONNECT 127.0.0.1:9 with what is not HTTP"),
], ids=["never-answers", "closes", "not-http"])
async def test_proxy_faults(handler: Handler, reason: str, words: str) -> None:
    """Each names the proxy, keeps the reason the condition has elsewhere."""
    async with fake_proxy(handler) as port:
        with pytest.raises(ProbeFailure) as raised:
            await fetch(Request("https://127.0.0.1:9/"), timeout=0.3,
                        proxy=ProxyURL.parse(f"http://127.0.0.1:{port}"))
    assert raised.value.reason == reason, raised.value.detail
    assert raised.value.detail.startswith(f"proxy 127.0.0.1:{port}"), raised.value.detail
    assert words in raised.value.detail



async def tunnel_then_silent(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(5)  # the "origin" never answers the ClientHello
    writer.close()


async def test_a_handshake_through_the_tunnel_names_the_origin_via_the_proxy() -> None:
    """Once CONNECT succeeded, a stalled TLS handshake is the origin's (timeout),
    and the detail says it went through the proxy; the proxy phase was timed."""
    async with fake_proxy(tunnel_then_silent) as port:
        with pytest.raises(ProbeFailure) as raised:
            await fetch(Request("https://127.0.0.1:9/"), timeout=0.3,
                        proxy=ProxyURL.parse(f"http://127.0.0.1:{port}"))
    assert raised.value.reason == "timeout"
    assert raised.value.detail == (f"TLS handshake with 127.0.0.1:9 via proxy 127.0.0.1:{port} "
                                   "not done within 0.3s")
