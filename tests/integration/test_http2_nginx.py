"""HTTP/2 against a real nginx (`listen ... ssl http2`): the probes offer h2 first,
nginx's access log ($server_protocol) shows HTTP/2.0 for their requests, and
`expect: {http_version: h2}` fails with `assertion` against an http/1.1-only server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.config.common import TLSOptions
from monitor.metricspecs import HTTP_PHASES
from monitor.net.fetch import Request, fetch
from monitor.probes.base import RunContext
from tests.support.h2_nginx import STATUS, h2_nginx, logged, protocols, run, url

pytestmark = pytest.mark.external  # nginx


async def test_http_probe_speaks_h2_to_nginx(tmp_path: Path, certs: Path) -> None:
    """Default offer (h2 first): nginx logs HTTP/2.0; facts and trace show the version;
    expect.http_version h2 and the gzip, header and JSON checks pass over HTTP/2."""
    async with h2_nginx(tmp_path, certs) as nginx:
        result = await run(certs, debug=True, kind="http", url=url(nginx), expect={
            "http_version": "h2", "headers": {"x-served-by": "^nginx-h2-test$",
                                              "content-encoding": "gzip"},
            "json": {"$.status": "ok", "$.checks[399].ok": True}})
        log = await logged(nginx, 1)
    assert result.ok, result.detail
    assert [line[:3] for line in log] == [["GET /health.json HTTP/2.0", "HTTP/2.0", "200"]]
    assert result.facts["http_version"] == "2"
    assert result.facts["body_bytes"] == len(json.dumps(STATUS))
    assert result.facts["body_wire_bytes"] < result.facts["body_bytes"] / 5
    assert "HTTP/2" in result.detail
    assert set(result.phases) == {"connect", "tls", "ttfb", "transfer"}
    trace = "\n".join(result.trace)
    assert "* alpn h2 (offered h2, http/1.1)" in trace
    assert "> GET /health.json HTTP/2" in trace
    assert "< HTTP/2 200 OK" in trace


async def test_expect_h2_fails_against_an_http11_only_server(tmp_path: Path,
                                                             certs: Path) -> None:
    """nginx without http2 selects http/1.1: the run fails with assertion, saying so."""
    async with h2_nginx(tmp_path, certs, http2=False) as nginx:
        result = await run(certs, kind="http", url=url(nginx),
                           expect={"http_version": "h2"})
        plain = await run(certs, kind="http", url=url(nginx))
        log = await protocols(nginx, 2)
    assert (result.ok, result.reason) == (False, "assertion")
    assert "HTTP/1.1 was spoken, expected h2" in result.detail
    assert plain.ok and plain.facts["http_version"] == "1.1"
    assert log == ["HTTP/1.1", "HTTP/1.1"]


async def test_http_versions_http11_only_offers_no_h2(tmp_path: Path, certs: Path) -> None:
    """http_versions: [http/1.1] against an h2 server: nginx logs HTTP/1.1, and
    expect.http_version http/1.1 passes."""
    async with h2_nginx(tmp_path, certs) as nginx:
        result = await run(certs, kind="http", url=url(nginx), http_versions=["http/1.1"],
                           expect={"http_version": "http/1.1"})
        log = await protocols(nginx, 1)
    assert result.ok, result.detail
    assert log == ["HTTP/1.1"]


async def test_only_h2_offered_to_an_http11_server_is_refused(tmp_path: Path,
                                                             certs: Path) -> None:
    """http_versions: [h2] against nginx without http2: nginx ends the handshake
    (no_application_protocol), a tls failure; nothing is sent over HTTP/1.1."""
    async with h2_nginx(tmp_path, certs, http2=False) as nginx:
        result = await run(certs, kind="http", url=url(nginx), http_versions=["h2"])
        log = await protocols(nginx, 0)
    assert not result.ok
    assert result.reason == "tls", result.detail
    assert "no application protocol" in result.detail
    assert log == []


async def test_redirect_over_h2_is_followed_on_a_fresh_connection(tmp_path: Path,
                                                                  certs: Path) -> None:
    """A 302 over HTTP/2 is followed like over HTTP/1.1: two requests, both HTTP/2."""
    async with h2_nginx(tmp_path, certs) as nginx:
        result = await run(certs, kind="http", url=url(nginx, "/old"))
        log = await logged(nginx, 2)
    assert result.ok, result.detail
    assert result.facts["redirects"] == 1
    assert [(line[0], line[2]) for line in log] == [("GET /old HTTP/2.0", "302"),
                                                   ("GET /health.json HTTP/2.0", "200")]


async def test_cap_over_h2(tmp_path: Path, certs: Path) -> None:
    """max_body_bytes applies over HTTP/2 as over HTTP/1.1 (decoded size)."""
    async with h2_nginx(tmp_path, certs) as nginx:
        result = await run(certs, kind="http", url=url(nginx), max_body_bytes=1000)
    assert result.reason == "assertion"
    assert "max_body_bytes (1000 bytes)" in result.detail


async def test_a_body_larger_than_the_window_is_sent(tmp_path: Path, certs: Path) -> None:
    """A 1 MiB POST body is sent within the flow-control windows nginx grants (its
    initial window is 64 KiB): WINDOW_UPDATEs are waited for, nginx answers 200."""
    async with h2_nginx(tmp_path, certs) as nginx:
        result = await run(certs, kind="http", url=url(nginx, "/upload"), method="POST",
                           body="x" * (1024 * 1024), expect={"body_regex": "stored"})
        log = await logged(nginx, 1)
    assert result.ok, result.detail
    assert log[-1][:3] == ["POST /upload HTTP/2.0", "HTTP/2.0", "200"]


async def test_lb_load_and_journey_speak_h2(tmp_path: Path, certs: Path) -> None:
    """The other kinds of the request model offer h2 first too."""
    tls = {"ca_file": str(certs / "ca.pem")}
    async with h2_nginx(tmp_path, certs) as nginx:
        lb = await run(certs, kind="lb", url=url(nginx), requests=3, concurrency=1)
        load = await run(certs, kind="load", url=url(nginx), rate=20, duration="250ms",
                         interval="1h", timeout="3s", max_error_ratio=0)
        journey = await run(certs, kind="journey", steps=[
            {"name": "one", "http": {"url": url(nginx), "tls": tls,
                                     "expect": {"http_version": "h2"}}},
            {"name": "two", "http": {"url": url(nginx, "/upload"), "method": "POST",
                                     "json": {"a": 1}, "tls": tls,
                                     "expect": {"http_version": "h2"}}},
        ])
        log = await protocols(nginx, 10)
    assert lb.ok, lb.detail
    assert load.ok, load.detail
    assert journey.ok, journey.detail
    assert len(log) >= 3 + 5 + 2
    assert set(log) == {"HTTP/2.0"}


async def test_fetch_reports_the_negotiated_version(tmp_path: Path, certs: Path) -> None:
    """fetch's own default stays HTTP/1.1 (burst); the request model's default is h2."""
    tls = TLSOptions(ca_file=certs / "ca.pem")
    async with h2_nginx(tmp_path, certs) as nginx:
        old = await fetch(Request(url(nginx)), timeout=5, tls=tls)
        new = await fetch(Request(url(nginx)), timeout=5, tls=tls,
                          http_versions=("h2", "http/1.1"))
        log = await protocols(nginx, 2)
    assert (old.http_version, new.http_version) == ("1.1", "2")
    assert log == ["HTTP/1.1", "HTTP/2.0"]


async def test_a_probe_context_records_h2_phases(tmp_path: Path, certs: Path) -> None:
    """ttfb and transfer are recorded into the run over HTTP/2 as well."""
    ctx = RunContext("t", "http", phase_metric=HTTP_PHASES)
    async with h2_nginx(tmp_path, certs) as nginx:
        response = await fetch(Request(url(nginx)), timeout=5, ctx=ctx,
                               tls=TLSOptions(ca_file=certs / "ca.pem"),
                               http_versions=("h2",))
    assert response.http_version == "2"
    assert {"connect", "tls", "ttfb", "transfer"} <= set(response.phases)
    assert all(seconds >= 0 for seconds in response.phases.values())




async def test_journey_step_expecting_h2_from_an_http11_server(tmp_path: Path,
                                                              certs: Path) -> None:
    """A journey http step with expect.http_version h2 against nginx without http2
    fails that step with assertion; its trace shows the version spoken."""
    tls = {"ca_file": str(certs / "ca.pem")}
    async with h2_nginx(tmp_path, certs, http2=False) as nginx:
        result = await run(certs, debug=True, kind="journey", steps=[
            {"name": "one", "http": {"url": url(nginx), "tls": tls,
                                     "expect": {"http_version": "h2"}}}])
    assert result.reason == "assertion"
    assert result.detail == "step 'one': HTTP/1.1 was spoken, expected h2"
    assert any("< HTTP/1.1 200 OK" in line for line in result.trace)


async def test_h2_trace_masks_credentials(tmp_path: Path, certs: Path) -> None:
    """Over HTTP/2 the trace lists the request fields as sent (lower-case), with
    credential headers masked as over HTTP/1.1."""
    async with h2_nginx(tmp_path, certs) as nginx:
        result = await run(certs, debug=True, kind="http", url=url(nginx),
                           headers={"Authorization": "Bearer sekrit-token-123",
                                    "Cookie": "session=sekrit-cookie-456"})
    assert result.ok, result.detail
    trace = "\n".join(result.trace)
    assert "> authorization: <redacted>" in trace
    assert "> cookie: <redacted>" in trace
    assert "sekrit" not in trace
