"""HTTP/2 against a real nginx (`listen ... ssl http2`): the probes offer h2 first,
nginx's access log ($server_protocol) shows HTTP/2.0 for their requests, and
`expect: {http_version: h2}` fails with `assertion` against an http/1.1-only server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import TypeAdapter

from monitor.config.models import ProbeConfig
from monitor.probes import build_probe
from monitor.probes.base import Result, RunContext
from monitor.probes.httpclient import Request, fetch
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.nginx import Nginx, serve_nginx

PROBE_CONFIG: TypeAdapter[Any] = TypeAdapter(ProbeConfig)
STATUS = {"status": "ok", "checks": [{"name": f"check-{n}", "ok": True} for n in range(400)]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("h2-certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(root / "server.pem"))
    return root


@asynccontextmanager
async def h2_nginx(tmp_path: Path, certs: Path, *, http2: bool = True,
                   extra: str = "") -> AsyncIterator[Nginx]:
    """nginx on TLS, with http2 on (or off: an http/1.1-only server)."""

    def site(port: int, root: Path) -> str:
        (root / "health.json").write_text(json.dumps(STATUS))
        return f"""\
    types {{ application/json json; }}
    client_max_body_size 8m;
    server {{
        listen 127.0.0.1:{port} ssl{' http2' if http2 else ''};
        ssl_certificate {certs / 'server.pem'};
        ssl_certificate_key {certs / 'server.pem'};
        root {root};
        gzip on;
        gzip_types application/json;
        add_header X-Served-By nginx-h2-test;
        location = /old {{ return 302 /health.json; }}
        location = /upload {{ return 200 "stored\\n"; }}
{extra}
    }}
"""

    async with serve_nginx(tmp_path, site) as nginx:
        yield nginx


def url(nginx: Nginx, path: str = "/health.json") -> str:
    return f"https://127.0.0.1:{nginx.port}{path}"


async def run(certs: Path, debug: bool = False, **fields: Any) -> Result:
    if fields["kind"] != "journey":
        fields.setdefault("tls", {"ca_file": str(certs / "ca.pem")})
    cfg = PROBE_CONFIG.validate_python({"name": "t", "interval": "30s", "timeout": "5s",
                                        **fields})
    return await run_once(build_probe(cfg), cfg, redactor=Redactor(), debug=debug)


async def logged(nginx: Nginx, count: int) -> list[list[str]]:
    """The access log once it has ``count`` lines (nginx writes a line just after
    the response went out: the client may be done first), within 2 s."""
    for _ in range(200):
        lines = nginx.log_lines()
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.01)
    return nginx.log_lines()


async def protocols(nginx: Nginx, count: int) -> list[str]:
    return [line[1] for line in await logged(nginx, count)]


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
    assert result.reason in ("tls", "protocol"), result.detail
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
    from monitor.config.common import TLSOptions

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
    from monitor.config.common import TLSOptions

    ctx = RunContext("t", "http", phase_metric="monitor_http_phase_duration_seconds")
    async with h2_nginx(tmp_path, certs) as nginx:
        response = await fetch(Request(url(nginx)), timeout=5, ctx=ctx,
                               tls=TLSOptions(ca_file=certs / "ca.pem"),
                               http_versions=("h2",))
    assert response.http_version == "2"
    assert {"connect", "tls", "ttfb", "transfer"} <= set(response.phases)
    assert all(seconds >= 0 for seconds in response.phases.values())


