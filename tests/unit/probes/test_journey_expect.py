"""Journey http steps: the same expect checks as `kind: http`, and compressed bodies,
against a real aiohttp app on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
from typing import Any

from aiohttp import web

from tests.support.http_servers import serve_app
from tests.unit.net.test_compression import bomb
from tests.unit.probes.test_journey import walk

TOKEN = "eyJ-journey-token-0123456789"
BOMB = web.AppKey("bomb", bytes)


def service() -> web.Application:
    async def login(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "token": TOKEN, "user": {"id": 7}},
                                 headers={"X-App-Revision": "auth-00012"})

    async def compressed(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"status": "ok", "pad": "x" * 5000}).encode())
        return web.Response(body=body, content_type="application/json",
                            headers={"Content-Encoding": "gzip"})

    async def bombed(request: web.Request) -> web.Response:
        return web.Response(body=request.app[BOMB], content_type="application/json",
                            headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app[BOMB] = bomb(64 * 1024 * 1024)
    app.router.add_post("/login", login)
    app.router.add_get("/compressed", compressed)
    app.router.add_get("/bomb", bombed)
    return app


def step(url: str, expect: dict[str, Any], **fields: Any) -> list[dict[str, Any]]:
    return [{"name": "login", "http": {"method": "POST" if url.endswith("/login") else "GET",
                                       "url": url, "expect": expect, **fields}}]


async def test_headers_json_and_regex_lists_pass() -> None:
    """Every check of `kind: http` works on a journey step."""
    expect = {"status": [200], "headers": {"x-app-revision": r"^auth-\d+$"},
              "headers_absent": ["x-debug"], "body_regex": ['"token"', '"status"'],
              "body_not_regex": ["error"],
              "json": {"$.status": "ok", "$.user.id": 7, "$.token": {"regex": "^eyJ"}}}
    async with serve_app(service()) as server:
        result = await walk(step(server.url + "/login", expect))
    assert result.ok, result.detail


async def test_a_failing_check_names_the_step_and_shows_no_value() -> None:
    """The detail names the step and the check, never the token the body carries."""
    async with serve_app(service()) as server:
        json_fail = await walk(step(server.url + "/login", {"json": {"$.token": "other"}}))
        regex_fail = await walk(step(server.url + "/login", {"body_not_regex": "eyJ[-a-z]+"}))
        header_fail = await walk(step(server.url + "/login",
                                      {"headers": {"X-App-Revision": "^api-"}}))
    assert json_fail.reason == "assertion"
    assert json_fail.detail == (f"step 'login': json $.token is a string of {len(TOKEN)} "
                                'characters, expected "other"')
    assert regex_fail.detail == "step 'login': body matches body_not_regex 'eyJ[-a-z]+'"
    assert header_fail.detail == "step 'login': header x-app-revision does not match '^api-'"
    for result in (json_fail, regex_fail, header_fail):
        assert TOKEN not in result.detail


async def test_a_gzip_body_is_checked_decoded() -> None:
    """aiohttp's client decodes the step's gzip body; the checks see JSON."""
    async with serve_app(service()) as server:
        result = await walk(step(server.url + "/compressed", {"json": {"$.status": "ok"}}))
    assert result.ok, result.detail
    assert "gzip" in server.requests[0].headers["Accept-Encoding"]


async def test_a_gzip_bomb_fails_with_assertion() -> None:
    """max_body_bytes counts decoded bytes in journeys too: a bomb is an assertion."""
    async with serve_app(service()) as server:
        result = await walk(step(server.url + "/bomb", {}))
    assert result.reason == "assertion"
    assert "larger than max_body_bytes" in result.detail
