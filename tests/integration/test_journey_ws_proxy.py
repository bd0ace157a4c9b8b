"""A journey's ws_connect through `proxy_url`: a CONNECT tunnel through a real
tinyproxy for wss:// (TLS with the origin inside it, trustme certificates) and
ws:// (RFC 6455 4.1), no_proxy going direct, and the proxy's own failures with
the reasons and "proxy HOST:PORT" details of http steps. The origin is the
demo's agent service (an aiohttp WebSocket server) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from monitor.config.loader import parse_config
from monitor.demo.agent import DEMO_PASSWORD
from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Result
from monitor.redact import Redactor
from monitor.runner import run_once
from monitor.status import build_status
from tests.support.agent import AgentServer, serve_agent, silent_server
from tests.support.running import run_recorded
from tests.support.tinyproxy import free_port, serve_tinyproxy

pytestmark = pytest.mark.external  # tinyproxy

USER, PASSWORD = "probe", "s3cret-ws-proxy-pw"
# What Proxy-Authorization carries: as secret as the password.
BASIC_TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(tmp_path: Path, ca: trustme.CA) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def steps(agent: AgentServer, ws: dict[str, Any], *, login: dict[str, Any] | None = None
          ) -> list[dict[str, Any]]:
    """Login, then connect (with ``ws`` keys), ask, answer, close."""
    return [
        {"name": "login", "http": {
            "method": "POST", "url": f"{agent.url}/auth/login", **(login or {}),
            "json": {"user": "probe", "password": "${AGENT_PASSWORD}"},
            "expect": {"status": [200]}, "extract": {"token": "$.token"}}},
        {"name": "connect", "ws_connect": {
            "url": agent.ws_url, "headers": {"Authorization": "Bearer ${token}"}, **ws}},
        {"name": "ask", "ws_send": {"json": {"type": "user_message", "text": "ping"}}},
        {"name": "answer", "ws_expect": {"json_match": {"type": "agent_response"},
                                         "timeout": "2s"}},
        {"name": "bye", "ws_close": None},
    ]


async def walk(journey: list[dict[str, Any]], env: dict[str, str] | None = None) -> Result:
    probe = {"name": "ws-proxy", "kind": "journey", "interval": "30s", "timeout": "5s",
             "steps": journey}
    config = parse_config(yaml.safe_dump({"probes": [probe]}),
                          {"AGENT_PASSWORD": DEMO_PASSWORD, **(env or {})}, kinds=PROBE_KINDS)
    cfg = config.probes[0]
    return await run_once(build_probe(cfg), redactor=Redactor(config.secrets),
                          debug=True)


def no_secret(*kept: Any) -> None:
    text = json.dumps(kept, default=str)
    assert PASSWORD not in text
    assert BASIC_TOKEN not in text


async def test_wss_through_connect(tmp_path: Path, ca: trustme.CA, ca_file: str) -> None:
    """wss:// goes through a CONNECT tunnel (tinyproxy's log shows it) with the TLS
    handshake to the origin inside it, verified against the private CA."""
    tls = {"ca_file": ca_file}
    async with serve_agent(ssl_context=server_ssl(ca)) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        with serve_tinyproxy(tmp_path, connect_ports=[port]) as proxy:
            result = await walk(steps(agent, {"tls": tls, "proxy_url": proxy.url},
                                      login={"tls": tls}))
            proxy_log = proxy.log_text()
    assert result.ok, result.detail
    # One CONNECT: the login went direct, the WebSocket through the proxy.
    assert proxy_log.count(f"CONNECT 127.0.0.1:{port}") == 1, proxy_log
    trace = "\n".join(result.trace)
    assert f"* CONNECT 127.0.0.1:{port} via proxy 127.0.0.1:{proxy.port}" in trace
    assert "HTTP 101 Switching Protocols" in trace


async def test_ws_through_connect(tmp_path: Path) -> None:
    """ws:// goes through CONNECT too (aiohttp's own proxy support would send
    GET ws://... in absolute form, which tinyproxy answers 400)."""
    async with serve_agent() as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        with serve_tinyproxy(tmp_path, connect_ports=[port]) as proxy:
            result = await walk(steps(agent, {"proxy_url": proxy.url},
                                      login={"proxy_url": proxy.url}))
            proxy_log = proxy.log_text()
    assert result.ok, result.detail
    assert f"CONNECT 127.0.0.1:{port}" in proxy_log, proxy_log  # the WebSocket
    assert f"POST http://127.0.0.1:{port}/auth/login" in proxy_log, proxy_log  # the login
    assert "GET ws://" not in proxy_log


async def test_no_proxy_goes_direct(tmp_path: Path) -> None:
    """A ws host matched by no_proxy is reached directly: tinyproxy sees nothing."""
    async with serve_agent() as agent:
        with serve_tinyproxy(tmp_path) as proxy:
            result = await walk(steps(agent, {"proxy_url": proxy.url,
                                              "no_proxy": "localhost,127.0.0.0/8"}))
            proxy_log = proxy.log_text()
    assert result.ok, result.detail
    assert "CONNECT 127.0.0.1" not in proxy_log
    assert "Request (file descriptor" not in proxy_log
    assert "* direct (no_proxy)" in "\n".join(result.trace)


async def test_refused_proxy_port(tmp_path: Path) -> None:
    """Nothing listens at the proxy's port: connect_refused, naming the proxy."""
    port = free_port()
    async with serve_agent() as agent:
        result = await walk(steps(agent, {"proxy_url": f"http://127.0.0.1:{port}"}))
    assert result.reason == "connect_refused", result.detail
    assert result.detail.startswith(f"step 'connect': proxy 127.0.0.1:{port}: "), \
        result.detail


async def test_port_the_proxy_does_not_tunnel_to(tmp_path: Path) -> None:
    """tinyproxy answers 403 to CONNECT outside ConnectPort: auth, saying so."""
    async with serve_agent() as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        with serve_tinyproxy(tmp_path, connect_ports=[port + 1]) as proxy:
            result = await walk(steps(agent, {"proxy_url": proxy.url}))
    assert result.reason == "auth", result.detail
    assert result.detail == (f"step 'connect': proxy 127.0.0.1:{proxy.port} answered 403 "
                             f"Access violation to CONNECT 127.0.0.1:{port}"), result.detail


@pytest.mark.parametrize(("password", "answer"), [
    (None, "407 Proxy Authentication Required"), ("wrong-pw", "401 Unauthorized")],
    ids=["no-credentials", "wrong"])
async def test_proxy_refuses_credentials(tmp_path: Path, ca: trustme.CA, ca_file: str,
                                         password: str | None, answer: str) -> None:
    """tinyproxy with BasicAuth: 407 without credentials, 401 to wrong ones; both auth,
    the detail saying whether credentials were sent (never what they were)."""
    async with serve_agent(ssl_context=server_ssl(ca)) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        with serve_tinyproxy(tmp_path, connect_ports=[port],
                             basic_auth=(USER, PASSWORD)) as proxy:
            userinfo = f"{USER}:{password}@" if password else ""
            result = await walk(steps(agent, {
                "tls": {"ca_file": ca_file},
                "proxy_url": f"http://{userinfo}127.0.0.1:{proxy.port}"},
                login={"tls": {"ca_file": ca_file}}))
    assert result.reason == "auth", result.detail
    tail = " (the credentials of proxy_url were refused)" if password else \
        " (proxy_url has no credentials)"
    assert result.detail == (f"step 'connect': proxy 127.0.0.1:{proxy.port} answered "
                             f"{answer} to CONNECT 127.0.0.1:{port}{tail}"), result.detail
    assert "wrong-pw" not in json.dumps(result.trace)


async def test_password_stays_out_of_traces_logs_and_status(tmp_path: Path, ca: trustme.CA,
                                                            ca_file: str) -> None:
    """Through the loader (${PROXY_PASSWORD}), runner, recorder and /api/status: a
    journey whose WebSocket passes the proxy with credentials, and one refused, keep
    the password and its Basic token out of logs, details, traces, facts and labels."""
    tls = {"ca_file": ca_file}
    async with serve_agent(ssl_context=server_ssl(ca)) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        with serve_tinyproxy(tmp_path, connect_ports=[port],
                             basic_auth=(USER, PASSWORD)) as proxy:
            probes = [{"name": name, "kind": "journey", "interval": "30s", "timeout": "5s",
                       "steps": steps(agent, {
                           "tls": tls,
                           "proxy_url": f"http://{USER}:${{{var}}}@127.0.0.1:{proxy.port}"},
                           login={"tls": tls})}
                      for name, var in (("good", "PROXY_PASSWORD"), ("bad", "WRONG"))]
            config = parse_config(yaml.safe_dump({"probes": probes}), {
                "AGENT_PASSWORD": DEMO_PASSWORD, "PROXY_PASSWORD": PASSWORD,
                "WRONG": PASSWORD + "x"}, kinds=PROBE_KINDS)
            redactor = Redactor(config.secrets)
            logs: list[dict[str, Any]] = []
            recorder, results = await run_recorded(config, redactor, debug=True, logs=logs)
            proxy_log = proxy.log_text()
    good, bad = results
    assert good.ok, good.detail
    assert bad.reason == "auth", bad.detail
    assert proxy_log.count(f"CONNECT 127.0.0.1:{port}") == 2, proxy_log
    status = build_status(recorder, {}, redactor)
    no_secret(logs, [(r.detail, r.trace, r.facts) for r in results], status,
              [s.labels for r in results for s in r.samples], repr(config.probes))
    assert PASSWORD + "x" not in json.dumps([r.trace for r in results])


async def test_origin_certificate_checked_inside_the_tunnel(tmp_path: Path,
                                                            ca: trustme.CA) -> None:
    """Without the private CA the TLS handshake with the origin, inside the tunnel,
    fails with tls, and the detail says it went via the proxy."""
    async with serve_agent(ssl_context=server_ssl(ca)) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        with serve_tinyproxy(tmp_path, connect_ports=[port]) as proxy:
            result = await walk(steps(agent, {"proxy_url": proxy.url},
                                      login={"tls": {"insecure_skip_verify": True}}))
            proxy_log = proxy.log_text()
    assert result.reason == "tls", result.detail
    assert result.detail.startswith(f"step 'connect': TLS handshake with 127.0.0.1:{port} "
                                    f"via proxy 127.0.0.1:{proxy.port}: "), result.detail
    assert f"CONNECT 127.0.0.1:{port}" in proxy_log


async def test_proxy_that_never_answers_connect() -> None:
    """A proxy that accepts and stays silent (an asyncio server that never answers):
    the step's timeout is the proxy's, and the detail says so."""
    async with serve_agent() as agent, silent_server() as proxy_url:
        journey = steps(agent, {"proxy_url": proxy_url, "timeout": "500ms"})
        result = await walk(journey)
    port = int(agent.url.rsplit(":", 1)[1])
    proxy_port = int(proxy_url.rsplit(":", 1)[1])
    assert result.reason == "timeout", result.detail
    assert result.detail == (f"step 'connect': proxy 127.0.0.1:{proxy_port} did not answer "
                             f"CONNECT 127.0.0.1:{port} within 0.5s"), result.detail


def answering(head: bytes) -> Any:
    """A proxy (an asyncio server) that reads the CONNECT and answers ``head``,
    or closes without a word when ``head`` is empty."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if head:
            writer.write(head)
            await writer.drain()
        writer.close()

    return handle


@pytest.mark.parametrize(("head", "reason", "words"), [
    (b"", "connection_reset", "closed the connection before answering CONNECT"),
    (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n", "capacity",
     "answered 429 Too Many Requests to CONNECT"),
    (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", "http_status",
     "answered 502 Bad Gateway to CONNECT"),
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "http_status",
     "answered 503 Service Unavailable to CONNECT"),
    (b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n", "http_status",
     "answered 504 Gateway Timeout to CONNECT"),
], ids=["closes", "429", "502", "503", "504"])
async def test_proxy_answers(head: bytes, reason: str, words: str) -> None:
    """What tinyproxy cannot be made to do on cue: the reasons of the http table."""
    server = await asyncio.start_server(answering(head), "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    try:
        async with serve_agent() as agent:
            result = await walk(steps(agent, {"proxy_url": f"http://127.0.0.1:{proxy_port}"}))
    finally:
        server.close()
        await server.wait_closed()
    port = int(agent.url.rsplit(":", 1)[1])
    assert result.reason == reason, result.detail
    assert result.detail.startswith(f"step 'connect': proxy 127.0.0.1:{proxy_port} "), \
        result.detail
    assert f"{words} 127.0.0.1:{port}" in result.detail, result.detail


# uvloop is an optional extra (monitor[uvloop]), not a required binary: may skip.
@pytest.mark.external(optional=True)
def test_the_tunnel_on_uvloop(tmp_path: Path, ca: trustme.CA, ca_file: str) -> None:
    """The daemon runs on uvloop when it is installed (monitor run --loop auto), and
    the tunnel hands its socket from one transport to another: wss, ws and a 407
    again on a uvloop loop."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_wss_through_connect(tmp_path, ca, ca_file))
        runner.run(test_ws_through_connect(tmp_path))
        runner.run(test_proxy_refuses_credentials(tmp_path, ca, ca_file, None,
                                                  "407 Proxy Authentication Required"))
        assert isinstance(runner.get_loop(), uvloop.Loop)
