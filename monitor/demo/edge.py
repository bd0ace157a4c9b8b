"""A small stand-in for the load balancer: round-robin over the backends.

It forwards to the backends over HTTPS and passes their answers through,
adding `via: 1.1 google` as Google's load balancer does, on its own answers
too. When a backend cannot be reached it answers 502 itself (without the
application's header), as the real one does.
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

PASSED_HEADERS = ("content-type", "x-app-revision", "x-served-by")
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=10)


def edge_app(upstreams: list[str], client_ssl: ssl.SSLContext) -> web.Application:
    turn = itertools.cycle(range(len(upstreams)))
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def forward(request: web.Request) -> web.Response:
        upstream = upstreams[next(turn)]
        try:
            async with request.app[session_key].get(upstream + request.path_qs) as answer:
                body = await answer.read()
                headers = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_HEADERS}
                return web.Response(status=answer.status, body=body,
                                    headers={**headers, "via": "1.1 google"})
        except (aiohttp.ClientError, TimeoutError):
            return web.Response(status=502, text="upstream connect error",
                                headers={"via": "1.1 google"})

    async def session(app: web.Application) -> AsyncIterator[None]:
        # force_close: never reuse an upstream connection that may be reset.
        connector = aiohttp.TCPConnector(ssl=client_ssl, force_close=True)
        app[session_key] = aiohttp.ClientSession(connector=connector, timeout=UPSTREAM_TIMEOUT)
        yield
        await app[session_key].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_get("/{tail:.*}", forward)
    return app
