"""The `kind: http` probe against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from monitor import USER_AGENT
from monitor.config import ConfigError, parse_config
from monitor.config.http import HttpProbeConfig
from monitor.probes import KINDS, PROBE_KINDS
from monitor.probes.base import Result
from monitor.probes.http import HttpProbe
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.configs import probe_config
from tests.support.http_servers import Certs, read_head, self_signed, serve_app, serve_raw
from tests.support.running import run_probe

PHASES = "monitor_http_phase_duration_seconds"
RESPONSES = "monitor_http_responses_total"
ORIGINS = [
    {"name": "service", "header": "x-app-revision"},
    {"name": "platform", "header": "x-app-revision", "absent": True},
]


def config(url: str, **fields: Any) -> HttpProbeConfig:
    fields = {"interval": "30s", "timeout": "2s", **fields}
    cfg: HttpProbeConfig = probe_config("http", url=url, **fields)
    return cfg


async def probe(url: str, *, debug: bool = False, **fields: Any) -> Result:
    return await run_probe(HttpProbe(config(url, **fields)), debug=debug)


def responses(result: Result) -> list[tuple[str, str]]:
    """(code, origin) of every response counted, in order."""
    found = []
    for sample in result.samples:
        if sample.metric == RESPONSES:
            labels = dict(sample.labels)
            found.append((labels["code"], labels["origin"]))
    return found


def app_with(handler: Any, path: str = "/{tail:.*}") -> web.Application:
    app = web.Application()
    app.router.add_route("*", path, handler)
    return app


def status_app(status: int, headers: dict[str, str] | None = None, text: str = "ok",
               ) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=text, headers=headers or {})
    return app_with(handler)


async def test_registered() -> None:
    """The registry maps kind http to HttpProbe."""
    assert KINDS["http"] is HttpProbe


async def test_200_succeeds_and_counts_the_response() -> None:
    """A 200 is a success; its response is counted with its origin."""
    app = status_app(200, {"x-app-revision": "r1"}, '{"status": "ok"}')
    async with serve_app(app) as server:
        result = await probe(server.url + "/", origins=ORIGINS,
                             expect={"body_regex": '"ok"'})
    assert result.ok, result.detail
    assert responses(result) == [("200", "service")]
    assert result.facts["status"] == 200
    assert result.facts["http_version"] == "1.1"
    assert result.facts["url"] == server.url + "/"
    assert result.facts["tls_version"] is None


@pytest.mark.parametrize(
    ("headers", "origin"),
    [({"x-app-revision": "r1"}, "service"), ({}, "platform")],
    ids=["app-header-service", "no-app-header-platform"],
)
async def test_503_fails_with_http_status_and_origin(headers: dict[str, str],
                                                     origin: str) -> None:
    """A 503 fails with http_status; the origin rules tell service from platform."""
    async with serve_app(status_app(503, headers, "unavailable")) as server:
        result = await probe(server.url, origins=ORIGINS)
    assert result.reason == "http_status"
    assert "status 503 (expected 2xx)" in result.detail
    assert f"origin {origin}" in result.detail
    assert responses(result) == [("503", origin)]


async def test_503_without_origin_rules_is_unclassified() -> None:
    """Without origins every response is counted as unclassified."""
    async with serve_app(status_app(503)) as server:
        result = await probe(server.url)
    assert responses(result) == [("503", "unclassified")]


async def test_429_is_capacity() -> None:
    """A 429 that was not expected fails with capacity, not http_status."""
    async with serve_app(status_app(429, text="rate exceeded")) as server:
        result = await probe(server.url)
    assert result.reason == "capacity"
    assert "status 429" in result.detail


async def test_expected_status_passes() -> None:
    """expect.status replaces the 2xx default: a listed 503 passes, a 200 fails."""
    async with serve_app(status_app(503)) as server:
        ok = await probe(server.url, expect={"status": [503]})
    async with serve_app(status_app(200)) as server:
        failed = await probe(server.url, expect={"status": [503]})
    assert ok.ok
    assert failed.reason == "http_status"
    assert "expected 503" in failed.detail


async def test_slow_response_beyond_timeout_is_timeout() -> None:
    """A server that holds its answer past the probe's timeout fails with timeout."""
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async with serve_app(app_with(hold)) as server:
        result = await probe(server.url, timeout="300ms")
        release.set()
    assert result.reason == "timeout"
    assert "no response" in result.detail
    assert "connect" in result.phases


async def test_redirect_followed_and_every_response_counted() -> None:
    """A redirect is followed on a fresh connection; both responses are counted."""
    app = web.Application()

    async def start(request: web.Request) -> web.Response:
        raise web.HTTPFound("/end")

    async def end(request: web.Request) -> web.Response:
        return web.Response(text="here")

    app.router.add_get("/start", start)
    app.router.add_get("/end", end)
    async with serve_app(app) as server:
        result = await probe(server.url + "/start")
    assert result.ok, result.detail
    assert responses(result) == [("302", "unclassified"), ("200", "unclassified")]
    assert result.facts["url"] == server.url + "/end"
    assert result.facts["redirects"] == 1
    assert server.connections == 2


async def test_redirects_exhausted_is_http_status() -> None:
    """Running out of max_redirects fails with http_status and says so."""
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/again")

    async with serve_app(app_with(loop, "/{tail:.*}")) as server:
        result = await probe(server.url + "/x", max_redirects=3)
    assert result.reason == "http_status"
    assert "stopped after 3 redirects (max_redirects)" in result.detail
    assert len(responses(result)) == 4
    assert server.connections == 4


async def test_max_redirects_zero_keeps_the_redirect() -> None:
    """max_redirects 0 turns following off: the 3xx is judged by expect.status."""
    async def move(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/elsewhere")

    async with serve_app(app_with(move)) as server:
        failed = await probe(server.url, max_redirects=0)
        ok = await probe(server.url, max_redirects=0, expect={"status": [301]})
    assert failed.reason == "http_status"
    assert "status 301" in failed.detail
    assert ok.ok


@pytest.mark.parametrize(
    ("expect", "needle"),
    [({"body_regex": '"ok"'}, "does not match"),
     ({"body_not_regex": "error"}, "matches body_not_regex")],
    ids=["body_regex-missing", "body_not_regex-found"],
)
async def test_wrong_body_is_assertion(expect: dict[str, str], needle: str) -> None:
    """A body that fails body_regex or body_not_regex fails with assertion."""
    async with serve_app(status_app(200, text='{"status": "error"}')) as server:
        result = await probe(server.url, expect=expect)
    assert result.reason == "assertion"
    assert needle in result.detail


async def test_body_over_cap_is_assertion() -> None:
    """A body larger than max_body_bytes fails with assertion."""
    async with serve_app(status_app(200, text="x" * 5000)) as server:
        result = await probe(server.url, max_body_bytes=4096)
        exact = await probe(server.url, max_body_bytes=5000)
    assert result.reason == "assertion"
    assert "max_body_bytes (4096 bytes)" in result.detail
    assert exact.ok, exact.detail


async def test_slower_than_max_duration_is_assertion() -> None:
    """A response slower than expect.max_duration fails with assertion."""
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)  # the server is slow; the probe's limit is 10 ms
        return web.Response(text="ok")

    async with serve_app(app_with(slow)) as server:
        result = await probe(server.url, expect={"max_duration": "10ms"})
    assert result.reason == "assertion"
    assert "more than max_duration" in result.detail


async def test_refused_port_is_connect_refused(free_port: int) -> None:
    """A port nobody listens on fails with connect_refused."""
    result = await probe(f"http://127.0.0.1:{free_port}/")
    assert result.reason == "connect_refused"
    assert "refused" in result.detail


async def test_invalid_name_is_dns() -> None:
    """A name under .invalid never resolves: dns."""
    result = await probe("http://monitor-test.invalid/health")
    assert result.reason == "dns"
    assert "monitor-test.invalid" in result.detail


@pytest.mark.parametrize(
    ("names", "valid", "needle"),
    [
        (("127.0.0.1",), "expired", "expired"),
        (("other.example",), "now", "mismatch"),
    ],
    ids=["expired", "wrong-host"],
)
async def test_bad_certificates_are_tls(certs: Certs, names: tuple[str, ...], valid: str,
                                        needle: str) -> None:
    """An expired or wrong-host certificate fails with tls and says why."""
    now = dt.datetime.now(dt.UTC)
    window = ({"not_before": now - dt.timedelta(days=30), "not_after": now - dt.timedelta(days=1)}
              if valid == "expired" else {})
    context = certs.server_context(*names, **window)
    async with serve_app(status_app(200), ssl_context=context) as server:
        result = await probe(server.url, tls={"ca_file": str(certs.ca_file)})
    assert result.reason == "tls"
    assert needle in result.detail
    assert responses(result) == []


async def test_self_signed_needs_its_ca_file(tmp_path: Path) -> None:
    """A self-signed certificate fails without ca_file and passes with it."""
    context, cert_file = self_signed(tmp_path)
    async with serve_app(status_app(200), ssl_context=context) as server:
        untrusted = await probe(server.url)
        trusted = await probe(server.url, tls={"ca_file": str(cert_file)})
        skipped = await probe(server.url, tls={"insecure_skip_verify": True})
    assert untrusted.reason == "tls"
    assert "self-signed" in untrusted.detail
    assert trusted.ok, trusted.detail
    assert trusted.facts["tls_version"].startswith("TLSv1.")
    assert skipped.ok, skipped.detail


async def test_private_ca_trusted_through_ca_file(certs: Certs) -> None:
    """A certificate of a private CA passes only with that CA as ca_file."""
    async with serve_app(status_app(200), ssl_context=certs.server_context()) as server:
        untrusted = await probe(server.url)
        trusted = await probe(server.url, tls={"ca_file": str(certs.ca_file)})
    assert untrusted.reason == "tls"
    assert "unable to get local issuer certificate" in untrusted.detail
    assert trusted.ok, trusted.detail


async def test_server_that_never_answers_is_timeout() -> None:
    """A server that accepts and never answers: connect succeeds, then timeout."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes away

    async with serve_raw(silent) as server:
        result = await probe(server.url, timeout="300ms")
    assert result.reason == "timeout"
    assert "connect" in result.phases
    assert "ttfb" not in result.phases


async def test_accept_then_close_is_connection_reset_without_retry() -> None:
    """A server that closes after the request fails with connection_reset, once."""
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.close()

    async with serve_raw(close) as server:
        result = await probe(server.url)
    assert result.reason == "connection_reset"
    assert "before any response byte" in result.detail
    assert server.connections == 1


async def test_reset_is_not_retried() -> None:
    """A TCP reset after the request is connection_reset and is never resent."""
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async with serve_raw(reset) as server:
        result = await probe(server.url, method="GET")
    assert result.reason == "connection_reset"
    assert "reset" in result.detail
    assert server.connections == 1


async def test_garbage_status_line_is_protocol() -> None:
    """An invalid status line fails with protocol."""
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 two hundred OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serve_raw(garbage) as server:
        result = await probe(server.url)
    assert result.reason == "protocol"


async def test_head_over_64k_is_protocol() -> None:
    """A response head over 64 KiB fails with protocol."""
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * (70 * 1024) + b"\r\n")
        await writer.drain()
        await reader.read()

    async with serve_raw(huge) as server:
        result = await probe(server.url)
    assert result.reason == "protocol"
    assert "larger than 64 KiB" in result.detail


async def test_phases_present_and_ordered(certs: Certs) -> None:
    """An https run by name has dns, connect, tls, ttfb, transfer, in that order,
    each observed into the phase histogram once."""
    context = certs.server_context("localhost")
    async with serve_app(status_app(200), ssl_context=context) as server:
        result = await probe(f"https://localhost:{server.port}/",
                             tls={"ca_file": str(certs.ca_file)})
    assert result.ok, result.detail
    assert list(result.phases) == ["dns", "connect", "tls", "ttfb", "transfer"]
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert sum(result.phases.values()) <= result.duration
    observed = [dict(s.labels)["phase"] for s in result.samples if s.metric == PHASES]
    assert observed == list(result.phases)


async def test_user_agent_sent() -> None:
    """Every request carries User-Agent: monitor/<version> and a Host header."""
    async with serve_app(status_app(200)) as server:
        result = await probe(server.url + "/ua")
    assert result.ok
    request = server.requests[0]
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Host"] == server.target


async def test_method_headers_and_body_sent() -> None:
    """method, headers and body of the config reach the server."""
    seen: dict[str, Any] = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(method=request.method, body=await request.text(),
                    header=request.headers.get("X-Probe"))
        return web.Response(status=201)

    async with serve_app(app_with(echo)) as server:
        result = await probe(server.url, method="POST", body='{"ping": 1}',
                             headers={"X-Probe": "yes"})
    assert result.ok, result.detail
    assert seen == {"method": "POST", "body": '{"ping": 1}', "header": "yes"}


async def test_secrets_absent_from_trace_and_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Header secrets reach the server but never the trace, the detail or facts."""
    token = "s3cr3t-token-value-42"
    api_key = "k3y-0f-the-api-17"

    async def leak(request: web.Request) -> web.Response:
        # A server that echoes credentials back, in a header and in the body.
        return web.Response(status=500, headers={"X-Echo": request.headers["X-Api-Key"]},
                            text=f"denied {request.headers['Authorization']}")

    async with serve_app(app_with(leak)) as server:
        text = f"""
probes:
  - name: secret
    kind: http
    url: {server.url}/?token={token}
    timeout: 2s
    headers:
      Authorization: "Bearer ${{PROBE_TOKEN}}"
      X-Api-Key: "${{API_KEY}}"
"""
        cfg = parse_config(text, {"PROBE_TOKEN": token, "API_KEY": api_key}, kinds=PROBE_KINDS)
        probe_cfg = cfg.probe("secret")
        result = await run_once(HttpProbe(probe_cfg),
                                redactor=Redactor(cfg.secrets), debug=True)
    assert server.requests[0].headers["Authorization"] == f"Bearer {token}"
    assert result.reason == "http_status"
    assert result.trace, "debug mode records a trace"
    assert any(line.startswith("> Authorization:") for line in result.trace)
    everything = "\n".join([result.detail, *result.trace, repr(result.facts),
                            repr(result.samples)])
    assert token not in everything
    assert api_key not in everything


async def test_trace_has_both_heads_in_debug_only() -> None:
    """--debug traces phases and both heads; without it nothing is traced."""
    async with serve_app(status_app(200, {"x-app-revision": "r7"})) as server:
        traced = await probe(server.url + "/t", debug=True)
        quiet = await probe(server.url + "/t")
    assert "> GET /t HTTP/1.1" in traced.trace
    assert "< HTTP/1.1 200 OK" in traced.trace
    assert "< x-app-revision: r7" in traced.trace
    assert any(line.startswith("* connected to 127.0.0.1:") for line in traced.trace)
    assert traced.trace[-1].startswith("* phases connect=")
    assert quiet.trace == []


def test_initial_samples_cover_codes_and_origins() -> None:
    """Zero series exist for the 503 family x every origin and unclassified."""
    cfg = config("http://127.0.0.1:1/", origins=[*ORIGINS, {"name": "service", "header": "x"}])
    samples = HttpProbe(cfg).initial_samples()
    pairs = {(dict(s.labels)["code"], dict(s.labels)["origin"]) for s in samples}
    assert len(samples) == len(pairs) == 18
    assert pairs == {(code, origin)
                     for code in ("200", "429", "500", "502", "503", "504")
                     for origin in ("service", "platform", "unclassified")}
    assert all(s.metric == RESPONSES and s.value == 0 for s in samples)


async def test_google_id_token_sent_as_bearer_and_masked() -> None:
    """auth.google_id_token puts the provider's token in Authorization
    (replacing a configured one); the trace masks it."""
    from monitor.gcp.tokens import IdTokenProvider

    token = "eyJ-fake-id-token-for-tests"
    audiences: list[str] = []

    def fetch_token(audience: str) -> tuple[str, float]:
        audiences.append(audience)
        return token, time.time() + 3600

    async with serve_app(status_app(200)) as server:
        cfg = config(server.url, auth={"google_id_token": {"audience": server.url}},
                     headers={"Authorization": "Basic old"})
        result = await run_probe(HttpProbe(cfg, id_tokens=IdTokenProvider(fetch_token)),
                                 debug=True)
    assert result.ok, result.detail
    assert audiences == [server.url]
    assert server.requests[0].headers.getall("Authorization") == [f"Bearer {token}"]
    assert "> Authorization: <redacted>" in result.trace
    assert token not in "\n".join(result.trace)


async def test_google_id_token_unavailable_is_auth() -> None:
    """No ID token: the run fails with auth and sends no request."""
    from monitor.gcp.tokens import IdTokenProvider

    def no_token(audience: str) -> tuple[str, float]:
        raise OSError("metadata server unreachable")

    async with serve_app(status_app(200)) as server:
        cfg = config(server.url, auth={"google_id_token": {"audience": "https://svc"}})
        result = await run_probe(HttpProbe(cfg, id_tokens=IdTokenProvider(no_token)))
    assert result.reason == "auth"
    assert server.connections == 0


def test_header_value_with_line_break_is_refused() -> None:
    """A header value with CR/LF (header injection) is a config error."""
    with pytest.raises(ConfigError, match="line break"):
        config("http://127.0.0.1:1/", headers={"X-A": "v\r\nX-Injected: 1"})


async def test_metrics_through_the_recorder() -> None:
    """Through the recorder: zero series up front, then the response counted
    by code and origin and each phase observed once, on the registry."""
    from prometheus_client import CollectorRegistry

    from monitor.metrics import Metrics
    from monitor.recorder import Recorder

    registry = CollectorRegistry()
    recorder = Recorder(Metrics(registry))
    async with serve_app(status_app(503)) as server:
        cfg = config(server.url, origins=ORIGINS)
        p = HttpProbe(cfg)
        recorder.register(cfg, p.registration_samples())
        labels = {"probe": "web", "kind": "http"}
        platform_503 = {**labels, "code": "503", "origin": "platform"}
        assert registry.get_sample_value(RESPONSES, platform_503) == 0
        result = await run_once(p, redactor=Redactor(), on_result=recorder.record)
    assert result.reason == "http_status"
    assert registry.get_sample_value(RESPONSES, platform_503) == 1
    for phase in ("connect", "ttfb", "transfer"):  # the last run's phases, as gauges
        seconds = registry.get_sample_value(PHASES, {**labels, "phase": phase})
        assert seconds == result.phases[phase] and seconds > 0
    assert registry.get_sample_value(
        "monitor_probe_failures_total", {**labels, "reason": "http_status"}) == 1
