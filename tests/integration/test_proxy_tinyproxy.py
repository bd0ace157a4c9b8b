"""`proxy_url` through a real tinyproxy: CONNECT for https (TLS and ALPN with the
origin inside the tunnel), absolute-form for plain http, and the proxy's own
failures (refused port, 403 for a port it does not tunnel to, 407) with reasons
whose details say it was the proxy. The origins are real nginx servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from monitor.config.loader import parse_config
from monitor.probes import PROBE_KINDS
from monitor.probes.base import Result
from monitor.redact import MASK, Redactor
from monitor.status import build_status
from tests.support.h2_nginx import h2_nginx, logged, run, url
from tests.support.nginx import serve_nginx
from tests.support.running import run_recorded
from tests.support.tinyproxy import Tinyproxy, free_port, serve_tinyproxy

pytestmark = pytest.mark.external  # tinyproxy, nginx

USER, PASSWORD = "probe", "s3cret-proxy-pw"


def plain_site(port: int, root: Path) -> str:
    (root / "health").write_text("plain ok\n")
    return f"""\
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /old {{ return 302 /health; }}
    }}
"""


def no_secret(result: Result) -> None:
    """The proxy password is nowhere in what a run keeps (detail, trace, facts)."""
    kept = json.dumps({"detail": result.detail, "trace": result.trace,
                       "facts": result.facts}, default=str)
    assert PASSWORD not in kept
    assert "czNjcmV0" not in kept  # nor its base64 in a Proxy-Authorization header


async def test_https_through_connect_speaks_h2_to_the_origin(tmp_path: Path,
                                                            certs: Path) -> None:
    """tinyproxy's log shows the CONNECT; nginx behind it logs HTTP/2.0; the
    proxy phase is timed apart from connect and tls."""
    async with h2_nginx(tmp_path, certs) as nginx:
        with serve_tinyproxy(tmp_path, connect_ports=[nginx.port]) as proxy:
            result = await run(certs, debug=True, kind="http", url=url(nginx),
                               proxy_url=proxy.url, expect={"http_version": "h2"})
            log = await logged(nginx, 1)
            proxy_log = proxy.log_text()
    assert result.ok, result.detail
    assert f"CONNECT 127.0.0.1:{nginx.port}" in proxy_log, proxy_log
    assert log[-1][:3] == ["GET /health.json HTTP/2.0", "HTTP/2.0", "200"]
    assert {"connect", "proxy", "tls", "ttfb", "transfer"} <= set(result.phases)
    trace = "\n".join(result.trace)
    assert f"> CONNECT 127.0.0.1:{nginx.port} HTTP/1.1 (proxy 127.0.0.1:{proxy.port})" in trace
    assert "< HTTP/1.0 200 Connection established" in trace or "< HTTP/1.1 200" in trace


async def test_plain_http_goes_in_absolute_form(tmp_path: Path) -> None:
    """A plain-http URL is requested as GET http://host:port/path from the proxy
    (its log shows it); a redirect is followed through the proxy too."""
    async with serve_nginx(tmp_path, plain_site) as nginx:
        with serve_tinyproxy(tmp_path) as proxy:
            result = await run(Path("/"), debug=True, kind="http",
                               url=f"{nginx.url}/old", proxy_url=proxy.url,
                               expect={"body_regex": "plain ok"}, tls={})
            log = await logged(nginx, 2)
            proxy_log = proxy.log_text()
    assert result.ok, result.detail
    assert result.facts["redirects"] == 1
    assert f"GET http://127.0.0.1:{nginx.port}/old" in proxy_log, proxy_log
    assert f"GET http://127.0.0.1:{nginx.port}/health" in proxy_log, proxy_log
    assert [line[0] for line in log] == ["GET /old HTTP/1.1", "GET /health HTTP/1.1"]
    assert "proxy" not in result.phases  # no CONNECT: the proxy's work is in ttfb
    assert f"> GET http://127.0.0.1:{nginx.port}/old HTTP/1.1" in "\n".join(result.trace)


async def test_no_proxy_goes_direct(tmp_path: Path) -> None:
    """A host matched by no_proxy is reached directly: tinyproxy sees nothing."""
    async with serve_nginx(tmp_path, plain_site) as nginx:
        with serve_tinyproxy(tmp_path) as proxy:
            result = await run(Path("/"), kind="http", url=f"{nginx.url}/health",
                               proxy_url=proxy.url, no_proxy=["localhost", "127.0.0.0/8"],
                               tls={})
            proxy_log = proxy.log_text()
    assert result.ok, result.detail
    assert "GET http://" not in proxy_log


async def test_a_refused_proxy_port(certs: Path) -> None:
    """Nothing listens at the proxy's port: connect_refused, the detail names the proxy."""
    port = free_port()
    result = await run(certs, kind="http", url="https://127.0.0.1:9/health",
                       proxy_url=f"http://127.0.0.1:{port}")
    assert result.reason == "connect_refused"
    assert result.detail.startswith(f"proxy 127.0.0.1:{port}: "), result.detail


async def test_connect_to_a_port_the_proxy_does_not_tunnel_to(tmp_path: Path,
                                                              certs: Path) -> None:
    """tinyproxy answers 403 to CONNECT outside its ConnectPort list: auth, saying so."""
    async with h2_nginx(tmp_path, certs) as nginx:
        with serve_tinyproxy(tmp_path, connect_ports=[nginx.port + 1]) as proxy:
            result = await run(certs, kind="http", url=url(nginx), proxy_url=proxy.url)
            log = await logged(nginx, 0)
    assert result.reason == "auth", result.detail
    assert result.detail.startswith(f"proxy 127.0.0.1:{proxy.port} answered 403 "), \
        result.detail
    assert result.detail.endswith(f"to CONNECT 127.0.0.1:{nginx.port}")
    assert log == []


@pytest.fixture
def with_auth(tmp_path: Path) -> Any:
    def start(connect_ports: list[int]) -> Any:
        return serve_tinyproxy(tmp_path, connect_ports=connect_ports,
                               basic_auth=(USER, PASSWORD))
    return start


def proxy_with(proxy: Tinyproxy, password: str | None) -> str:
    if password is None:
        return proxy.url
    return f"http://{USER}:{password}@127.0.0.1:{proxy.port}"


# tinyproxy 1.11 answers 407 without credentials, 401 to wrong ones.
@pytest.mark.parametrize(("password", "answer"), [
    (None, "407 Proxy Authentication Required"), ("wrong-pw", "401 Unauthorized")],
    ids=["no-credentials", "wrong"])
async def test_407_to_connect(tmp_path: Path, certs: Path, with_auth: Any,
                              password: str | None, answer: str) -> None:
    """tinyproxy with BasicAuth refuses: auth, and the detail says whether
    credentials were sent (never what they were)."""
    async with h2_nginx(tmp_path, certs) as nginx:
        with with_auth([nginx.port]) as proxy:
            result = await run(certs, debug=True, kind="http", url=url(nginx),
                               proxy_url=proxy_with(proxy, password))
    assert result.reason == "auth", result.detail
    assert result.detail.startswith(
        f"proxy 127.0.0.1:{proxy.port} answered {answer} to "
        f"CONNECT 127.0.0.1:{nginx.port}"), result.detail
    assert ("were refused" in result.detail) == (password is not None)
    if password is not None:
        assert f"> Proxy-Authorization: {MASK}" in result.trace
        assert "wrong-pw" not in json.dumps(result.trace)


async def test_credentials_pass_connect_and_stay_secret(tmp_path: Path, certs: Path,
                                                        with_auth: Any) -> None:
    """The right credentials open the tunnel; the password is in no detail, trace
    line or fact."""
    async with h2_nginx(tmp_path, certs) as nginx:
        with with_auth([nginx.port]) as proxy:
            result = await run(certs, debug=True, kind="http", url=url(nginx),
                               proxy_url=proxy_with(proxy, PASSWORD))
    assert result.ok, result.detail
    no_secret(result)


async def test_plain_http_407_and_credentials(tmp_path: Path, with_auth: Any) -> None:
    """Over plain http the 407 is the answer to the request itself: auth too; with
    credentials (Proxy-Authorization on the request) tinyproxy lets it through."""
    async with serve_nginx(tmp_path, plain_site) as nginx:
        with with_auth([]) as proxy:
            refused = await run(Path("/"), kind="http", url=f"{nginx.url}/health",
                                proxy_url=proxy.url, tls={})
            passed = await run(Path("/"), debug=True, kind="http",
                               url=f"{nginx.url}/health", tls={},
                               proxy_url=proxy_with(proxy, PASSWORD))
    assert refused.reason == "auth", refused.detail
    assert refused.detail.startswith(f"proxy 127.0.0.1:{proxy.port} answered 407"), \
        refused.detail
    assert passed.ok, passed.detail
    no_secret(passed)


async def test_the_origin_refusing_behind_the_proxy(tmp_path: Path, certs: Path) -> None:
    """CONNECT to a port where nothing listens: tinyproxy cannot reach it and
    answers an error status; the detail says the proxy answered it."""
    closed = free_port()
    with serve_tinyproxy(tmp_path, connect_ports=[closed]) as proxy:
        result = await run(certs, kind="http", url=f"https://127.0.0.1:{closed}/",
                           proxy_url=proxy.url)
    assert result.reason == "http_status", result.detail
    assert result.detail.startswith(f"proxy 127.0.0.1:{proxy.port} answered 5"), result.detail


async def test_lb_load_and_journey_through_the_proxy(tmp_path: Path, certs: Path) -> None:
    """The other kinds of the request model go through proxy_url too."""
    tls = {"ca_file": str(certs / "ca.pem")}
    async with h2_nginx(tmp_path, certs) as nginx:
        with serve_tinyproxy(tmp_path, connect_ports=[nginx.port]) as proxy:
            lb = await run(certs, kind="lb", url=url(nginx), requests=2, concurrency=1,
                           proxy_url=proxy.url)
            load = await run(certs, kind="load", url=url(nginx), rate=10,
                             duration="300ms", interval="1h", timeout="3s",
                             proxy_url=proxy.url)
            journey = await run(certs, kind="journey", steps=[
                {"name": "one", "http": {"url": url(nginx), "tls": tls,
                                         "proxy_url": proxy.url}}])
            connects = proxy.log_text().count(f"CONNECT 127.0.0.1:{nginx.port}")
            log = await logged(nginx, 2 + 3 + 1)
    assert lb.ok, lb.detail
    assert load.ok, load.detail
    assert journey.ok, journey.detail
    assert connects >= 2 + 3 + 1
    assert {line[1] for line in log} == {"HTTP/2.0"}



async def test_proxy_password_stays_out_of_logs_status_and_metrics(tmp_path: Path,
                                                                   certs: Path) -> None:
    """Through the real loader (${PROXY_PASSWORD}), runner, recorder and /api/status:
    a refused and a passing run keep the password and its Basic token out of logs,
    details, traces, facts and metric labels; status shows the version and the proxy."""
    async with h2_nginx(tmp_path, certs) as nginx:
        with serve_tinyproxy(tmp_path, connect_ports=[nginx.port],
                             basic_auth=(USER, PASSWORD)) as proxy:
            probes = [{"name": name, "kind": "http", "interval": "30s", "timeout": "5s",
                       "url": url(nginx), "tls": {"ca_file": str(certs / "ca.pem")},
                       "proxy_url": f"http://{USER}:${{{var}}}@127.0.0.1:{proxy.port}"}
                      for name, var in (("good", "PROXY_PASSWORD"), ("bad", "WRONG"))]
            config = parse_config(yaml.safe_dump({"probes": probes}),
                                  {"PROXY_PASSWORD": PASSWORD, "WRONG": PASSWORD + "x"},
                                  kinds=PROBE_KINDS)
            redactor = Redactor(config.secrets)
            logs: list[dict[str, Any]] = []
            recorder, results = await run_recorded(config, redactor, debug=True, logs=logs)
    good, bad = results
    assert good.ok, good.detail
    assert bad.reason == "auth"
    status = build_status(recorder, {}, redactor)
    [shown] = [p for p in status["probes"] if p["name"] == "good"]
    assert '"http_version": "2"' in json.dumps(shown)
    assert f'"proxy": "127.0.0.1:{proxy.port}"' in json.dumps(shown)
    everything = json.dumps([logs, [(r.detail, r.trace, r.facts) for r in results], status,
                             [s.labels for r in results for s in r.samples],
                             repr(config.probes)], default=str)
    for secret in (PASSWORD, PASSWORD + "x", "czNjcmV0"):
        assert secret not in everything


async def test_credentials_never_reach_an_origin_reached_directly(tmp_path: Path,
                                                                 with_auth: Any) -> None:
    """A redirect through the proxy to a host in no_proxy goes direct, and that
    origin (an aiohttp app recording its headers) gets no Proxy-Authorization."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="direct ok")

    app = web.Application()
    app.router.add_get("/landing", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    direct_port = runner.addresses[0][1]

    def redirecting(port: int, root: Path) -> str:
        return f"""\
    server {{
        listen 127.0.0.1:{port};
        location = /go {{ return 302 http://localhost:{direct_port}/landing; }}
    }}
"""

    try:
        async with serve_nginx(tmp_path, redirecting) as nginx:
            with with_auth([]) as proxy:
                result = await run(Path("/"), debug=True, kind="http", tls={},
                                   url=f"{nginx.url}/go", no_proxy=["localhost"],
                                   proxy_url=proxy_with(proxy, PASSWORD),
                                   expect={"body_regex": "direct ok"})
                proxy_log = proxy.log_text()
    finally:
        await runner.cleanup()
    assert result.ok, result.detail
    assert f"GET http://127.0.0.1:{nginx.port}/go" in proxy_log
    assert f"localhost:{direct_port}" not in proxy_log
    assert len(seen) == 1
    assert not any(name.lower() == "proxy-authorization" for name in seen[0])
    no_secret(result)
