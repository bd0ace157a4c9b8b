"""Trace headers on every request of every HTTP-speaking kind, against a real server.

Formats: W3C Trace Context (https://www.w3.org/TR/trace-context/, "traceparent
Header": version 00, 32 hex trace id, 16 hex parent id, 2 hex flags, all-zero
ids invalid) and Google's ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS``
(Cloud Trace docs, "Trace context", https://cloud.google.com/trace/docs/trace-context:
the span id is a decimal unsigned 64-bit integer).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from aiohttp import web
from structlog.testing import capture_logs

from monitor.config import parse_config
from monitor.config.tracing import TraceContextConfig
from monitor.net.fetch import Request
from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Result, RunContext
from monitor.redact import Redactor
from monitor.runner import run_once
from monitor.tracecontext import CLOUD_TRACE, TRACEPARENT, RunTrace, start_trace
from tests.support.http_servers import Served, serve_app

W3C = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])")
GOOGLE = re.compile(r"([0-9a-f]{32})/(\d{1,20});o=([01])")


def parsed(headers: Any) -> tuple[str, str, str]:
    """(trace id, span id as hex, sampled flag) of one request, checking both agree."""
    w3c = W3C.fullmatch(headers[TRACEPARENT])
    google = GOOGLE.fullmatch(headers[CLOUD_TRACE])
    assert w3c is not None and google is not None, dict(headers)
    assert w3c[1] == google[1]
    assert int(google[2]) == int(w3c[2], 16)
    assert (w3c[3] == "01") == (google[3] == "1")
    assert int(w3c[1], 16) != 0 and int(w3c[2], 16) != 0
    return w3c[1], w3c[2], w3c[3]


def test_headers_have_both_formats_and_a_fresh_span_per_request() -> None:
    """One trace per run, a new span per request, both headers agreeing."""
    trace = RunTrace()
    first, second = dict(trace.headers()), dict(trace.headers())
    t1, s1, flag = parsed(first)
    t2, s2, _ = parsed(second)
    assert t1 == t2 == trace.trace_id and s1 != s2 and flag == "01"
    assert RunTrace().trace_id != trace.trace_id


def test_switches_turn_each_header_off_and_sampling_down() -> None:
    """w3c, google and sampled do what they say; both off: no trace id at all."""
    only_google = dict(RunTrace(TraceContextConfig(w3c=False)).headers())
    assert set(only_google) == {CLOUD_TRACE}
    unsampled = dict(RunTrace(TraceContextConfig(sampled=False)).headers())
    assert unsampled[TRACEPARENT].endswith("-00") and unsampled[CLOUD_TRACE].endswith(";o=0")
    none = RunTrace(TraceContextConfig(w3c=False, google=False))
    assert none.trace_id is None and none.headers() == []
    ctx = RunContext("p", "http")
    start_trace(ctx, TraceContextConfig(w3c=False, google=False))
    assert "trace_id" not in ctx.facts


def test_apply_replaces_configured_headers_of_the_same_name() -> None:
    """A configured traceparent gives way to the run's own (one value per name)."""
    request = Request(url="http://x/", headers=[("traceparent", "00-ab-cd-01"), ("A", "b")])
    sent = RunTrace().apply(request).headers
    assert [n for n, _ in sent].count(TRACEPARENT) == 1 and ("A", "b") in sent


@pytest.fixture
async def server() -> AsyncIterator[Served]:
    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text="no backend")

    async def ws(request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.close()
        return socket

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", fail)
    app.router.add_get("/ws", ws)
    async with serve_app(app) as served:
        yield served


async def run(probe: dict[str, Any]) -> Result:
    base = {"name": "p", "interval": "30s", "timeout": "3s"}
    config = parse_config(yaml.safe_dump({"probes": [{**base, **probe}]}), {}, kinds=PROBE_KINDS)
    cfg = config.probes[0]
    return await run_once(build_probe(cfg), redactor=Redactor(config.secrets))


def traces(served: Served) -> list[tuple[str, str, str]]:
    return [parsed(r.headers) for r in served.requests]


async def test_http_failure_keeps_the_trace_id_of_what_it_sent(server: Served) -> None:
    """kind http: the request carries the headers; the failed run's facts and
    log line name the trace id the server saw."""
    with capture_logs() as logs:
        result = await run({"kind": "http", "url": f"{server.url}/fail"})
    assert not result.ok and result.reason == "http_status"
    [(trace_id, _, _)] = traces(server)
    assert result.facts["trace_id"] == trace_id
    [failed] = [e for e in logs if e["event"] == "probe failed"]
    assert failed["trace_id"] == trace_id


async def test_lb_requests_share_the_trace_with_a_span_each(server: Served) -> None:
    """kind lb: every request of one run has the run's trace id and its own span."""
    result = await run({"kind": "lb", "url": f"{server.url}/ok", "requests": 4,
                        "concurrency": 2})
    seen = traces(server)
    assert len(seen) == 4 and {t for t, _, _ in seen} == {result.facts["trace_id"]}
    assert len({s for _, s, _ in seen}) == 4


async def test_load_requests_carry_the_trace(server: Served) -> None:
    """kind load: each request carries the run's trace."""
    result = await run({"kind": "load", "url": f"{server.url}/ok", "rate": 20,
                        "duration": "250ms", "request_timeout": "1s", "interval": "1h",
                        "timeout": "5s"})
    seen = traces(server)
    assert seen and {t for t, _, _ in seen} == {result.facts["trace_id"]}
    assert len({s for _, s, _ in seen}) == len(seen)


async def test_burst_url_mode_requests_carry_the_trace(server: Served) -> None:
    """kind burst (url mode): one request per connection, each traced."""
    result = await run({"kind": "burst", "url": f"{server.url}/ok", "steps": [3],
                        "step_timeout": "2s", "interval": "5m", "level": 3})
    seen = traces(server)
    assert len(seen) == 3 and {t for t, _, _ in seen} == {result.facts["trace_id"]}


async def test_journey_http_and_websocket_steps_carry_the_trace(server: Served) -> None:
    """kind journey: the http step and the WebSocket upgrade share the run's trace."""
    result = await run({"kind": "journey", "level": 2, "steps": [
        {"name": "get", "http": {"url": f"{server.url}/ok"}},
        {"name": "connect", "ws_connect": {"url": f"ws://127.0.0.1:{server.port}/ws"}},
    ]})
    seen = traces(server)
    assert len(seen) == 2 and {t for t, _, _ in seen} == {result.facts["trace_id"]}


async def test_trace_context_off_sends_nothing(server: Served) -> None:
    """`trace_context: {w3c: false, google: false}` sends neither header."""
    result = await run({"kind": "http", "url": f"{server.url}/ok",
                        "trace_context": {"w3c": False, "google": False}})
    [request] = server.requests
    assert TRACEPARENT not in request.headers and CLOUD_TRACE not in request.headers
    assert "trace_id" not in result.facts
