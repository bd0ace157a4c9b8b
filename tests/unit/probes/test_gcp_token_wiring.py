"""auth.google_id_token reaches the target from every kind that sends HTTP (lb, load, journey)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from monitor.config import parse_config
from monitor.gcp import tokens
from monitor.probes import PROBE_KINDS, build_probe
from tests.support.http_servers import Served, serve_app
from tests.support.running import run_probe

TOKEN = "eyJ.fake-id-token.sig"


@pytest.fixture(autouse=True)
def fake_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "DEFAULT_PROVIDER",
                        tokens.IdTokenProvider(lambda audience: (TOKEN, 9e9)))


@pytest.fixture
async def target() -> AsyncIterator[Served]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"token": "t"})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.close()
        return socket

    app = web.Application()
    app.router.add_route("*", "/health", ok)
    app.router.add_get("/ws", ws)
    async with serve_app(app) as served:
        yield served


def probe_yaml(kind: str, url: str) -> str:
    auth = "auth: {google_id_token: {audience: https://svc.example}}"
    if kind == "lb":
        return f"{{name: p, kind: lb, url: '{url}/health', requests: 2, concurrency: 1, {auth}}}"
    if kind == "load":
        return (f"{{name: p, kind: load, url: '{url}/health', rate: 5, duration: 1s, "
                f"interval: 10m, {auth}}}")
    ws_url = url.replace("http://", "ws://")
    return f"""
    name: p
    kind: journey
    steps:
      - {{name: login, http: {{url: '{url}/health', {auth}}}}}
      - {{name: connect, ws_connect: {{url: '{ws_url}/ws', {auth}}}}}
"""


@pytest.mark.parametrize("kind", ["lb", "load", "journey"])
async def test_every_request_carries_the_id_token(kind: str, target: Served) -> None:
    """Each request the probe sends has `Authorization: Bearer <token>`."""
    text = f"probes:\n  - {probe_yaml(kind, target.url)}"
    config = parse_config(text, environ={}, kinds=PROBE_KINDS).probes[0]
    result = await run_probe(build_probe(config))
    assert result.ok, result.detail
    assert target.requests
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in target.requests)
    assert TOKEN not in result.detail
