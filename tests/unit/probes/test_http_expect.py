"""`kind: http` expect checks and compressed bodies, against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from aiohttp import web

from monitor.config import parse_config
from monitor.probes import PROBE_KINDS
from monitor.probes.http import HttpProbe
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.http_servers import serve_app
from tests.unit.net.test_compression import bomb
from tests.unit.probes.test_http import probe

BOMB = web.AppKey("bomb", bytes)
STATUS = {"status": "ok", "version": "1.4.2", "checks": {"db": "ok", "cache": "degraded"},
          "replicas": 3, "note": "x" * 2000}


def service() -> web.Application:
    """Health answers in every form the probes meet: plain, negotiated gzip, fixed
    gzip and deflate, a gzip bomb, a corrupt body, repeated headers."""

    async def health(request: web.Request) -> web.Response:
        response = web.json_response(STATUS, headers={"X-App-Revision": "backend-00042"})
        response.headers.add("Cache-Control", "no-store")
        response.headers.add("Cache-Control", "max-age=0")
        return response

    async def negotiated(request: web.Request) -> web.Response:
        # aiohttp compresses only when the request's Accept-Encoding allows it.
        response = web.json_response(STATUS)
        response.enable_compression()
        return response

    def encoded(body: bytes, coding: str) -> web.Response:
        return web.Response(body=body, content_type="application/json",
                            headers={"Content-Encoding": coding})

    async def fixed_gzip(request: web.Request) -> web.Response:
        return encoded(gzip.compress(json.dumps(STATUS).encode()), "gzip")

    async def fixed_deflate(request: web.Request) -> web.Response:
        return encoded(zlib.compress(json.dumps(STATUS).encode()), "deflate")

    async def bombed(request: web.Request) -> web.Response:
        return encoded(request.app[BOMB], "gzip")

    async def corrupt(request: web.Request) -> web.Response:
        return encoded(b"\x1f\x8b\x08\x00 this is not a deflate stream", "gzip")

    app = web.Application()
    app[BOMB] = bomb(64 * 1024 * 1024)
    for path, handler in [("/health", health), ("/negotiated", negotiated),
                          ("/gzip", fixed_gzip), ("/deflate", fixed_deflate),
                          ("/bomb", bombed), ("/corrupt", corrupt)]:
        app.router.add_get(path, handler)
    return app


async def test_every_check_passes_on_a_matching_response() -> None:
    """Headers (any case, one of repeated values), absent headers, regex lists and JSON paths."""
    expect = {
        "status": [200],
        "headers": {"x-app-revision": r"^backend-\d+$", "CONTENT-TYPE": "application/json",
                    "Cache-Control": "^max-age=0$"},
        "headers_absent": ["Server-Timing", "X-Debug"],
        "body_regex": ['"status": "ok"', '"version"'],
        "body_not_regex": ["maintenance", "panic"],
        "json": {"$.status": "ok", "$.replicas": 3, "$.checks.db": "ok",
                 "$.version": {"regex": r"^1\.4\."}},
    }
    async with serve_app(service()) as server:
        result = await probe(server.url + "/health", expect=expect)
    assert result.ok, result.detail


@pytest.mark.parametrize(
    ("expect", "detail"),
    [({"headers": {"X-App-Revision": "^backend-00043$"}},
      "header x-app-revision 'backend-00042' does not match '^backend-00043$'"),
     ({"headers": {"Cache-Control": "private"}},
      "header cache-control 'no-store', 'max-age=0' does not match 'private'"),
     ({"headers": {"Server-Timing": "."}}, "header server-timing is missing"),
     ({"headers_absent": ["x-app-revision"]}, "header x-app-revision is present"),
     ({"body_regex": ['"ok"', "healthy"]}, "body does not match body_regex 'healthy'"),
     ({"body_not_regex": "degraded"}, "body matches body_not_regex 'degraded': 'degraded'"),
     ({"json": {"$.checks.cache": "ok"}}, 'json $.checks.cache is "degraded", expected "ok"'),
     ({"json": {"$.checks.queue": "ok"}}, "json $.checks.queue: not found")],
    ids=["header-mismatch", "repeated-header-none-matches", "header-missing", "header-present",
         "body-regex", "body-not-regex", "json-value", "json-missing"],
)
async def test_a_failing_check_is_assertion_naming_it(expect: dict[str, Any], detail: str) -> None:
    """The run fails with assertion and the detail says which check and what came back."""
    async with serve_app(service()) as server:
        result = await probe(server.url + "/health", expect=expect)
    assert result.reason == "assertion"
    assert detail in result.detail


async def test_status_is_judged_before_the_body_checks() -> None:
    """A wrong status fails with http_status even when the body checks fail too."""
    async with serve_app(service()) as server:
        result = await probe(server.url + "/health",
                             expect={"status": [204], "json": {"$.status": "down"}})
    assert result.reason == "http_status"


async def test_accept_encoding_is_sent_and_the_gzip_answer_decoded() -> None:
    """By default the probe offers gzip and deflate; a server that compresses is decoded."""
    async with serve_app(service()) as server:
        result = await probe(server.url + "/negotiated",
                             expect={"json": {"$.status": "ok"}, "body_regex": "x{2000}"})
    assert result.ok, result.detail
    assert server.requests[0].headers["Accept-Encoding"] == "gzip, deflate"
    # aiohttp picks deflate from "gzip, deflate" (its own preference order).
    assert result.facts["content_encoding"] in ("gzip", "deflate")
    decoded = len(json.dumps(STATUS))
    assert result.facts["body_bytes"] == decoded
    assert 0 < result.facts["body_wire_bytes"] < decoded / 5  # the 2000 x's compress well


async def test_the_configs_accept_encoding_replaces_the_default() -> None:
    """Accept-Encoding in headers (any case) is sent instead of ours, once."""
    async with serve_app(service()) as server:
        result = await probe(server.url + "/negotiated", headers={"accept-encoding": "identity"})
    assert result.ok, result.detail
    sent = server.requests[0].headers.getall("Accept-Encoding")
    assert sent == ["identity"]
    assert result.facts["content_encoding"] is None
    assert result.facts["body_bytes"] == result.facts["body_wire_bytes"]


@pytest.mark.parametrize("path", ["/gzip", "/deflate"])
async def test_gzip_and_deflate_bodies_are_checked_decoded(path: str) -> None:
    """Body regexes and JSON paths see the decoded body of either coding."""
    async with serve_app(service()) as server:
        result = await probe(server.url + path,
                             expect={"json": {"$.checks.db": "ok"}, "body_regex": '"ok"'})
    assert result.ok, result.detail
    assert result.facts["content_encoding"] == path.strip("/")


async def test_a_gzip_bomb_fails_with_assertion() -> None:
    """64 KiB of gzip inflating to 64 MiB: over max_body_bytes once decoded, so assertion."""
    async with serve_app(service()) as server:
        result = await probe(server.url + "/bomb")
    assert result.reason == "assertion"
    assert "larger than max_body_bytes (1048576 bytes) once decoded (gzip" in result.detail


async def test_the_cap_counts_decoded_bytes() -> None:
    """A gzip body small on the wire but over max_body_bytes decoded fails."""
    decoded = len(json.dumps(STATUS))
    async with serve_app(service()) as server:
        over = await probe(server.url + "/gzip", max_body_bytes=decoded - 1)
        exact = await probe(server.url + "/gzip", max_body_bytes=decoded)
    assert over.reason == "assertion"
    assert exact.ok, exact.detail


async def test_a_corrupt_gzip_body_is_protocol() -> None:
    """A body that says gzip and is not fails with protocol."""
    async with serve_app(service()) as server:
        result = await probe(server.url + "/corrupt")
    assert result.reason == "protocol"
    assert "gzip body does not decode" in result.detail


async def test_a_secret_in_a_failing_value_is_redacted() -> None:
    """A detail quoting a value that is a configured secret shows it masked (the runner's job)."""
    token = "tok-9f8e7d6c5b4a"

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.headers['X-Token']}",
                            headers={"X-Echo": request.headers["X-Token"]})

    app = web.Application()
    app.router.add_get("/", echo)
    async with serve_app(app) as server:
        config = parse_config(
            f"probes: [{{name: web, kind: http, url: '{server.url}/', "
            "headers: {X-Token: '${PROBE_TOKEN}'}, expect: {headers: {X-Echo: '^nothing$'}}}]",
            {"PROBE_TOKEN": token}, kinds=PROBE_KINDS)
        cfg = config.probes[0]
        result = await run_once(HttpProbe(cfg), redactor=Redactor(config.secrets))
    assert result.reason == "assertion"
    assert token not in result.detail
    assert "header x-echo '<redacted>' does not match" in result.detail


async def test_the_trace_shows_the_offer_and_both_sizes() -> None:
    """--debug shows the Accept-Encoding sent and the body's decoded and wire sizes."""
    async with serve_app(service()) as server:
        result = await probe(server.url + "/gzip", debug=True)
    assert result.ok, result.detail
    decoded = len(json.dumps(STATUS))
    wire = result.facts["body_wire_bytes"]
    assert "> Accept-Encoding: gzip, deflate" in result.trace
    assert any(line.startswith(f"< body ({decoded} bytes, {wire} on the wire): ")
               for line in result.trace)
