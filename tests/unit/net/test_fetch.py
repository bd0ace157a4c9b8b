"""monitor.net.fetch: the probes' own HTTP/1.1 client, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from monitor.config.common import TLSOptions
from monitor.net.fetch import Request, Response, fetch, open_connection
from monitor.probes.base import ProbeFailure, RunContext
from tests.support.http_servers import Certs, RawHandler, read_head, serve_app, serve_raw


async def failure_of(request: Request, **kwargs: object) -> ProbeFailure:
    with pytest.raises(ProbeFailure) as caught:
        await fetch(request, timeout=kwargs.pop("timeout", 2.0), **kwargs)  # type: ignore[arg-type]
    return caught.value


def raw(response: bytes, *, then_close: bool = True,
        heads: list[bytes] | None = None) -> RawHandler:
    """A raw handler that reads the request head (into ``heads``) and writes ``response``."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if heads is not None:
            heads.append(head)
        writer.write(response)
        await writer.drain()
        if not then_close:
            await reader.read()
    return handler


async def test_response_fields_and_phases_into_ctx() -> None:
    """fetch returns status, headers and body, and adds its phases to ctx."""
    app = web.Application()

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="body", headers={"X-One": "1"})

    app.router.add_get("/", ok)
    ctx = RunContext("p", "http")
    async with serve_app(app) as server:
        response = await fetch(Request(server.url + "/"), timeout=2, ctx=ctx)
    assert (response.status, response.reason, response.http_version) == (200, "OK", "1.1")
    assert response.header("x-one") == "1"
    assert response.body == b"body"
    assert response.address == "127.0.0.1"
    assert ctx.phases == response.phases
    assert list(response.phases) == ["connect", "ttfb", "transfer"]


async def test_without_ctx_phases_stay_in_the_response() -> None:
    """Callers without a RunContext (load, burst) still get the timings."""
    async with serve_raw(raw(b"HTTP/1.1 204 No Content\r\n\r\n", then_close=False)) as server:
        response = await fetch(Request(server.url), timeout=2)
    assert response.status == 204
    assert set(response.phases) == {"connect", "ttfb", "transfer"}


async def test_chunked_and_close_delimited_bodies() -> None:
    """Chunked bodies and HTTP/1.0 bodies ended by close are read whole."""
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    async with serve_raw(raw(chunked, then_close=False)) as server:
        first = await fetch(Request(server.url), timeout=2)
    async with serve_raw(raw(b"HTTP/1.0 200 OK\r\n\r\nuntil close")) as server:
        second = await fetch(Request(server.url), timeout=2)
    assert first.body == b"abcde"
    assert (second.http_version, second.body) == ("1.0", b"until close")


async def test_broken_chunking_is_protocol() -> None:
    """A chunk size that is not hex fails with protocol."""
    broken = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
    async with serve_raw(raw(broken, then_close=False)) as server:
        failure = await failure_of(Request(server.url))
    assert failure.reason == "protocol"


async def test_not_http_at_all_is_protocol() -> None:
    """A peer that answers with something else (an SSH banner) is protocol."""
    async with serve_raw(raw(b"SSH-2.0-OpenSSH_9.2\r\n", then_close=False)) as server:
        failure = await failure_of(Request(server.url))
    assert failure.reason == "protocol"
    assert "not an HTTP response" in failure.detail


@pytest.mark.parametrize(
    ("answer", "where"),
    [(b"HTTP/1.1 200 OK\r\nContent-Le", "inside the response head"),
     (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..", "before the end of the body")],
    ids=["eof-in-head", "eof-in-body"],
)
async def test_eof_before_complete_response_is_connection_reset(answer: bytes,
                                                                where: str) -> None:
    """EOF before the response is complete is connection_reset, saying where."""
    async with serve_raw(raw(answer)) as server:
        failure = await failure_of(Request(server.url))
    assert failure.reason == "connection_reset"
    assert where in failure.detail


async def test_close_right_after_connect_is_connection_reset() -> None:
    """A peer that closes before reading the request (an auth proxy failing
    upstream) is connection_reset, and the request is not sent again."""
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serve_raw(close) as server:
        failure = await failure_of(Request(server.url, method="GET"))
    assert failure.reason == "connection_reset"
    assert server.connections == 1


async def test_redirect_to_another_origin_drops_credentials() -> None:
    """Authorization and Cookie are not sent on to another origin."""
    target = web.Application()

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text="landed")

    target.router.add_get("/land", landing)
    async with serve_app(target) as other:
        origin = web.Application()

        async def move(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(other.url + "/land")

        origin.router.add_get("/", move)
        async with serve_app(origin) as first:
            response = await fetch(Request(first.url + "/", headers=[
                ("Authorization", "Bearer abc"), ("Cookie", "s=1"), ("X-Keep", "yes")]),
                timeout=2)
    assert response.body == b"landed"
    assert [r.status for r in response.history] == [307]
    assert first.requests[0].headers["Authorization"] == "Bearer abc"
    landed = other.requests[0].headers
    assert "Authorization" not in landed
    assert "Cookie" not in landed
    assert landed["X-Keep"] == "yes"


async def test_303_after_post_continues_as_get() -> None:
    """A 303 after POST is followed with GET and no body."""
    app = web.Application()
    seen: list[tuple[str, bytes]] = []

    async def form(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read()))
        raise web.HTTPSeeOther("/done")

    async def done(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read()))
        return web.Response(text="done")

    app.router.add_post("/form", form)
    app.router.add_get("/done", done)
    async with serve_app(app) as server:
        response = await fetch(Request(server.url + "/form", method="POST", body=b"a=1",
                                       headers=[("Content-Type", "text/plain")]), timeout=2)
    assert response.status == 200
    assert seen == [("POST", b"a=1"), ("GET", b"")]


async def test_every_response_seen_by_the_hook() -> None:
    """on_response sees every head, redirects included, before the body."""
    app = web.Application()

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/last")

    async def last(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    app.router.add_get("/", hop)
    app.router.add_get("/last", last)
    seen: list[Response] = []
    async with serve_app(app) as server:
        response = await fetch(Request(server.url + "/"), timeout=2, on_response=seen.append)
    assert [r.status for r in seen] == [302, 503]
    assert seen[-1] is response
    assert seen[0].body == b""  # a redirect's body is not read


async def test_connect_address_keeps_host_and_sni(certs: Certs) -> None:
    """connect_address picks the IP; Host header and SNI stay the URL's name."""
    context = certs.server_context("svc.invalid")
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]
    app = web.Application()

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    ctx = RunContext("p", "lb")
    async with serve_app(app, ssl_context=context) as server:
        response = await fetch(Request(f"https://svc.invalid:{server.port}/"), timeout=2,
                               ctx=ctx, tls=TLSOptions(ca_file=certs.ca_file),
                               connect_address="127.0.0.1")
    assert response.status == 200
    assert names == ["svc.invalid"]
    assert server.requests[0].headers["Host"] == f"svc.invalid:{server.port}"
    assert "dns" not in ctx.phases


async def test_head_request_has_no_body() -> None:
    """HEAD is answered without a body and does not wait for one."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    async with serve_raw(raw(answer, then_close=False)) as server:
        response = await fetch(Request(server.url, method="HEAD"), timeout=2)
    assert response.status == 200
    assert response.body == b""


async def test_caller_user_agent_replaces_ours() -> None:
    """A User-Agent given by the caller is sent instead of monitor's, once."""
    heads: list[bytes] = []
    capture = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", heads=heads)
    async with serve_raw(capture) as server:
        await fetch(Request(server.url, headers=[("User-Agent", "custom/1")]), timeout=2)
    assert heads[0].count(b"User-Agent") == 1
    assert b"User-Agent: custom/1\r\n" in heads[0]


async def test_full_listen_queue_is_connect_timeout() -> None:
    """A listener whose accept queue is full drops SYNs: connect_timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        # Fill the accept queue (bounded: a few connections suffice on Linux).
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)  # let the handshakes of the fillers settle
        failure = await failure_of(Request(f"http://127.0.0.1:{port}/"), timeout=0.3)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    if failure.reason == "timeout":  # pragma: no cover - a kernel that completes the connect
        pytest.skip("this kernel completes connects beyond the listen backlog")
    assert failure.reason == "connect_timeout"
    assert "not done within 0.3s" in failure.detail


async def test_open_connection_times_phases(certs: Certs) -> None:
    """open_connection resolves, connects and shakes hands, timing each."""
    app = web.Application()
    ctx = RunContext("p", "tls")
    async with serve_app(app, ssl_context=certs.server_context("localhost")) as server:
        connection = await open_connection("localhost", server.port, timeout=2,
                                           tls=TLSOptions(ca_file=certs.ca_file), ctx=ctx)
        connection.close()
    assert connection.tls_version is not None
    assert list(ctx.phases) == ["dns", "connect", "tls"]


@pytest.mark.parametrize(
    ("answer", "status", "body", "headers"),
    [
        (b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok", 200, b"ok", [("x-a", "1")]),
        (b"HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\nContent-Length: 0\r\n\r\n", 200, b"",
         [("x-a", "one two")]),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
         201, b"x", []),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"2;ext=1\r\nab\r\n0\r\nX-Trailer: t\r\n\r\n", 200, b"ab", []),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw", 200, b"raw", []),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", 200, b"abc", []),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204, b"", []),
        (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200, b"", []),
    ],
    ids=["lf-only", "folded-header", "100-continue", "chunked-ext-trailer",
         "other-encoding-until-close", "repeated-equal-length", "204-no-body", "no-reason"],
)
async def test_lenient_but_correct_framing(answer: bytes, status: int, body: bytes,
                                           headers: list[tuple[str, str]]) -> None:
    """Valid variants of HTTP/1.x framing are read as RFC 9112 says."""
    async with serve_raw(raw(answer)) as server:
        response = await fetch(Request(server.url), timeout=2)
    assert response.status == status
    assert response.body == body
    for pair in headers:
        assert pair in response.headers


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
    ],
    ids=["conflicting-length", "negative-length", "space-in-name", "chunk-overrun",
         "two-digit-status", "http2-status-line"],
)
async def test_invalid_framing_is_protocol(answer: bytes) -> None:
    """Invalid heads and framing fail with protocol, not a guess."""
    async with serve_raw(raw(answer, then_close=False)) as server:
        failure = await failure_of(Request(server.url))
    assert failure.reason == "protocol"


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024
     + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n",
     b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 2048,
     b"HTTP/1.1 200 OK\r\nContent-Length: 2048\r\n\r\n"],
    ids=["chunked", "until-close", "content-length-announced"],
)
async def test_body_cap_applies_to_every_framing(answer: bytes) -> None:
    """max_body_bytes fails the fetch with assertion whatever the framing."""
    async with serve_raw(raw(answer)) as server:
        failure = await failure_of(Request(server.url), max_body_bytes=1500)
    assert failure.reason == "assertion"
    assert "max_body_bytes (1500 bytes)" in failure.detail


async def test_ca_file_gone_at_run_time_is_tls(certs: Certs) -> None:
    """A ca_file removed after the config loaded fails the run with tls."""
    tls = TLSOptions(ca_file=certs.ca_file)
    certs.ca_file.unlink()
    async with serve_app(web.Application(), ssl_context=certs.server_context()) as server:
        failure = await failure_of(Request(server.url), tls=tls)
    assert failure.reason == "tls"
    assert "cannot load ca_file" in failure.detail
    assert server.connections == 0


async def test_request_target_is_percent_encoded() -> None:
    """Spaces and non-ASCII in the URL's path and query are sent percent-encoded."""
    heads: list[bytes] = []
    capture = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", heads=heads)
    async with serve_raw(capture) as server:
        await fetch(Request(server.url + "/a b/é?q=x y&r=1"), timeout=2)
    assert heads[0].startswith(b"GET /a%20b/%C3%A9?q=x%20y&r=1 HTTP/1.1\r\n")


async def test_redirect_to_unusable_location_is_http_status() -> None:
    """A Location that cannot be requested (another scheme) fails with http_status."""
    answer = b"HTTP/1.1 302 Found\r\nLocation: ftp://files.example/x\r\nContent-Length: 0\r\n\r\n"
    async with serve_raw(raw(answer)) as server:
        failure = await failure_of(Request(server.url))
    assert failure.reason == "http_status"
    assert "cannot follow the redirect to ftp://files.example/x" in failure.detail


async def test_a_callers_progress_carries_the_ctx_and_both_at_once_is_refused() -> None:
    """fetch would drop one of the two silently; it says so before connecting."""
    from monitor.net.connect import Progress

    ctx = RunContext("p", "http")
    with pytest.raises(TypeError, match="not both"):
        await fetch(Request(url="http://127.0.0.1:9/"), timeout=1, ctx=ctx,
                    progress=Progress(ctx))
