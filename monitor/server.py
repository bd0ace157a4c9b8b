"""The aiohttp app: /metrics, /-/healthy, /-/ready, /-/reload, /api/status, /.

Basic auth (bcrypt hashes, as Prometheus' web config; see monitor.auth)
and TLS apply to every route when configured. No route takes a request
body beyond ``MAX_BODY_BYTES``: a larger one is refused with 413 before
anything reads it. Connection limits and timeouts live in monitor.httpd.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from importlib import resources

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from monitor.auth import BasicAuth
from monitor.config import ServerConfig
from monitor.daemon import Daemon
from monitor.exposition import CONTENT_TYPE, Exposition
from monitor.status import StatusBuilder, StatusQuery

log = structlog.get_logger("monitor.server")
DAEMON: web.AppKey[Daemon] = web.AppKey("daemon", Daemon)
# Request bodies each route accepts: none of them reads one; a reload may
# come with a small one from tools that always send something (`{}`).
MAX_BODY_BYTES = {("POST", "/-/reload"): 1024}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def listen_address(server: ServerConfig, environ: dict[str, str] | None = None) -> tuple[str, int]:
    """`server.listen`, with the port replaced by $PORT when set (Cloud Run)."""
    environ = dict(os.environ) if environ is None else environ
    host, _, port = server.listen.rpartition(":")
    if environ.get("PORT"):
        port = environ["PORT"]
    return host.strip("[]"), int(port)


def ssl_context(server: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context (validation loaded these files already)."""
    if server.tls is None:
        return None
    return server.tls.context()


def make_app(daemon: Daemon) -> web.Application:
    middlewares: list[Middleware] = [_body_limit]
    users = daemon.config.server.basic_auth_users
    auth = BasicAuth(users) if users else None
    if auth is not None:
        middlewares.append(_basic_auth(auth))
    # No route reads a body; this is aiohttp's own cap, should one ever do.
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app[DAEMON] = daemon
    if auth is not None:

        async def close_auth(_: web.Application) -> None:
            auth.close()

        app.on_cleanup.append(close_auth)
    exposition = Exposition(daemon.metrics.registry)
    statuses = StatusBuilder(daemon.recorder, daemon.redactor)

    async def metrics(request: web.Request) -> web.StreamResponse:
        daemon.recorder.update_verdict()  # results age out of the window between runs
        names = frozenset(request.query.getall("name[]", [])) or None
        chunks = [chunk async for chunk in exposition.stream(names)]
        body = web.Response(text="".join(chunks), headers={"Content-Type": CONTENT_TYPE})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body.enable_compression()  # aiohttp compresses a large body off the loop
        return body

    async def status(request: web.Request) -> web.Response:
        try:
            query = StatusQuery.parse(request.query)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        # A reload replaces the config (and maybe the secrets): entries start anew.
        body = statuses.build(dict(daemon.config.global_.labels), query,
                              generation=id(daemon.config))
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_post("/-/reload", _reload)
    app.router.add_get("/api/status", status)
    app.router.add_get("/", _page)
    return app


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy\n")


async def _ready(request: web.Request) -> web.Response:
    if request.app[DAEMON].ready:
        return web.Response(text="Ready\n")
    return web.Response(status=503, text="Not ready\n")


async def _reload(request: web.Request) -> web.Response:
    problems = await request.app[DAEMON].reload()
    if problems:
        return web.json_response({"status": "error", "problems": problems}, status=400)
    return web.json_response({"status": "success"})


async def _page(request: web.Request) -> web.Response:
    html = resources.files("monitor.web").joinpath("index.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


@web.middleware
async def _body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 for a body larger than the route takes, before anyone reads it."""
    limit = MAX_BODY_BYTES.get((request.method, request.path), 0)
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if (length is not None and length > limit) or (chunked and limit == 0):
        return web.Response(status=413, text="Request body too large\n",
                            headers={"Connection": "close"})
    return await handler(request)


def _basic_auth(auth: BasicAuth) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        verdict = await auth.check(request.headers.get("Authorization"))
        if verdict == "ok":
            return await handler(request)
        if verdict == "busy":
            return web.Response(status=429, text="Too many logins at once, retry\n",
                                headers={"Retry-After": "1"})
        return web.Response(status=401, text="Unauthorized\n",
                            headers={"WWW-Authenticate": 'Basic realm="monitor", charset="UTF-8"'})

    return middleware
