"""The aiohttp app: /metrics, /-/healthy, /-/ready, /-/reload, /api/status, /.

Basic auth (bcrypt hashes, as Prometheus' web config) and TLS apply to
every route when configured.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
from importlib import resources
from typing import Any

import bcrypt
import structlog
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from monitor.config import ServerConfig
from monitor.daemon import Daemon
from monitor.status import build_status

log = structlog.get_logger("monitor.server")
DAEMON: web.AppKey[Daemon] = web.AppKey("daemon", Daemon)


def listen_address(server: ServerConfig, environ: dict[str, str] | None = None) -> tuple[str, int]:
    """`server.listen`, with the port replaced by $PORT when set (Cloud Run)."""
    environ = dict(os.environ) if environ is None else environ
    host, _, port = server.listen.rpartition(":")
    if environ.get("PORT"):
        port = environ["PORT"]
    return host.strip("[]"), int(port)


def ssl_context(server: ServerConfig) -> ssl.SSLContext | None:
    if server.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.tls.cert_file, server.tls.key_file)
    return context


def make_app(daemon: Daemon) -> web.Application:
    middlewares = []
    users = daemon.config.server.basic_auth_users
    if users:
        middlewares.append(_basic_auth(users))
    app = web.Application(middlewares=middlewares)
    app[DAEMON] = daemon
    exposition = make_aiohttp_handler(daemon.metrics.registry)

    async def metrics(request: web.Request) -> web.StreamResponse:
        daemon.recorder.update_verdict()  # results age out of the window between runs
        response: web.StreamResponse = await exposition(request)
        return response

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_post("/-/reload", _reload)
    app.router.add_get("/api/status", _status)
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


async def _status(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    body = build_status(daemon.recorder, dict(daemon.config.global_.labels), daemon.redactor)
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _page(request: web.Request) -> web.Response:
    html = resources.files("monitor.web").joinpath("index.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def _basic_auth(users: dict[str, str]) -> Any:
    # bcrypt costs ~50-250 ms by design; remember what already verified so a
    # 15 s scrape does not pay it every time (keyed by a digest, not the password).
    verified: set[bytes] = set()

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            hashed = users.get(user)
            if hashed is not None:
                key = hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).digest()
                # bcrypt is slow on purpose: never on the event loop that probes.
                if key in verified or await asyncio.to_thread(
                        bcrypt.checkpw, password.encode(), hashed.encode()):
                    verified.add(key)
                    response: web.StreamResponse = await handler(request)
                    return response
        return web.Response(status=401, text="Unauthorized\n",
                            headers={"WWW-Authenticate": 'Basic realm="monitor"'})

    return middleware
