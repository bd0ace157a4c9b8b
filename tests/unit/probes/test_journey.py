"""The `kind: journey` probe against the demo's agent service on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from monitor.config import parse_config
from monitor.config.journey import JourneyProbeConfig
from monitor.demo.agent import DEMO_PASSWORD, WRONG_TYPE_MESSAGES
from monitor.metrics import Metrics
from monitor.probes import KINDS, PROBE_KINDS
from monitor.probes.base import Result
from monitor.probes.journey import JourneyProbe
from monitor.recorder import Recorder
from monitor.redact import Redactor
from monitor.runner import run_once
from monitor.status import build_status
from tests.support.agent import AgentServer, reset_server, serve_agent, silent_server
from tests.support.http_servers import serve_app

RESPONSES = "monitor_http_responses_total"
STEP_SUCCESS = "monitor_journey_step_success"
STEP_DURATION = "monitor_journey_step_duration_seconds"
STEPS = ["login", "connect", "ask", "answer", "bye"]


@pytest.fixture
async def agent() -> AsyncIterator[AgentServer]:
    async with serve_agent() as server:
        yield server


def golden_path(agent: AgentServer, *, answer: dict[str, Any] | None = None,
                timeout: str = "3s") -> list[dict[str, Any]]:
    """The golden path of the README against the agent, with short timeouts."""
    return [
        {"name": "login", "http": {
            "method": "POST", "url": f"{agent.url}/auth/login",
            "json": {"user": "probe", "password": "${AGENT_PASSWORD}"},
            "expect": {"status": [200]}, "extract": {"token": "$.token"}}},
        {"name": "connect", "ws_connect": {
            "url": agent.ws_url, "headers": {"Authorization": "Bearer ${token}"}}},
        {"name": "ask", "ws_send": {"json": {"type": "user_message", "text": "ping"}}},
        {"name": "answer", "ws_expect": answer or {
            "json_match": {"type": "agent_response"}, "timeout": "1s"}},
        {"name": "bye", "ws_close": None},
    ]


def load(steps: list[dict[str, Any]], *, password: str = DEMO_PASSWORD,
         **fields: Any) -> tuple[JourneyProbeConfig, Redactor]:
    """Through the real loader: env interpolation, `${token}` left for run time, secrets."""
    probe = {"name": "golden-path", "kind": "journey", "interval": "30s", "timeout": "3s",
             "steps": steps, **fields}
    config = parse_config(yaml.safe_dump({"probes": [probe]}), {"AGENT_PASSWORD": password},
                          kinds=PROBE_KINDS)
    return config.probes[0], Redactor(config.secrets)


async def walk(steps: list[dict[str, Any]], *, debug: bool = False, **fields: Any) -> Result:
    cfg, redactor = load(steps, **fields)
    return await run_once(JourneyProbe(cfg), redactor=redactor, debug=debug)


def samples(result: Result, metric: str) -> dict[str, float]:
    """step -> value (or "code/origin" -> value) of ``metric`` in ``result``."""
    found: dict[str, float] = {}
    for sample in result.samples:
        if sample.metric == metric:
            labels = dict(sample.labels)
            key = labels.get("step") or f"{labels['code']}/{labels['origin']}"
            found[key] = found.get(key, 0.0) + sample.value
    return found


async def no_sockets_left(agent: AgentServer) -> bool:
    """Wait (bounded) until the agent has no open WebSocket."""
    for _ in range(100):
        if agent.state.connected == 0:
            return True
        await asyncio.sleep(0.02)
    return False


def test_registered_kind() -> None:
    """`kind: journey` is in the probe registry."""
    assert KINDS["journey"] is JourneyProbe


async def test_full_success_records_every_step(agent: AgentServer) -> None:
    """The golden path succeeds; every step reports success and a duration."""
    result = await walk(golden_path(agent))
    assert result.ok, result.detail
    assert result.detail.startswith("5 steps ok (login ")
    assert samples(result, STEP_SUCCESS) == dict.fromkeys(STEPS, 1)
    durations = samples(result, STEP_DURATION)
    assert list(durations) == STEPS
    assert all(d > 0 for d in durations.values())
    assert list(result.phases) == STEPS
    assert samples(result, RESPONSES) == {"200/unclassified": 1, "101/unclassified": 1}
    assert result.facts["failed_step"] is None
    assert [s["name"] for s in result.facts["steps"]] == STEPS
    assert (agent.state.logins, agent.state.upgrades, agent.state.messages) == (1, 1, 1)
    assert await no_sockets_left(agent)


async def test_metrics_reach_the_registry(agent: AgentServer) -> None:
    """The recorder accepts every sample: step gauges, histograms, counted responses."""
    cfg, redactor = load(golden_path(agent))
    probe = JourneyProbe(cfg)
    registry = CollectorRegistry()
    recorder = Recorder(Metrics(registry))
    recorder.register(cfg, probe.registration_samples())
    base = {"probe": "golden-path", "kind": "journey"}
    assert registry.get_sample_value(RESPONSES, {**base, "code": "503",
                                                 "origin": "unclassified"}) == 0
    with capture_logs() as logs:
        recorder.record(await run_once(probe, redactor=redactor))
    assert not [e for e in logs if e["event"] == "invalid sample from probe"]
    for step in STEPS:
        assert registry.get_sample_value(STEP_SUCCESS, {**base, "step": step}) == 1
        assert registry.get_sample_value(f"{STEP_DURATION}_count", {**base, "step": step}) == 1
    assert registry.get_sample_value(RESPONSES, {**base, "code": "101",
                                                 "origin": "unclassified"}) == 1


async def test_wrong_password_fails_at_login(agent: AgentServer) -> None:
    """A refused login is http_status at step login; later steps do not run."""
    cfg, redactor = load(golden_path(agent), password="not-the-password")
    result = await run_once(JourneyProbe(cfg), redactor=redactor)
    assert result.reason == "http_status"
    assert result.detail == "step 'login': expected status 200, got 401"
    assert samples(result, STEP_SUCCESS) == dict.fromkeys(STEPS, 0)
    assert list(samples(result, STEP_DURATION)) == ["login"]
    assert samples(result, RESPONSES) == {"401/unclassified": 1}
    assert result.facts["failed_step"] == "login"
    assert agent.state.upgrades == 0


async def test_bad_token_is_auth_at_connect(agent: AgentServer) -> None:
    """An upgrade answered 401 is auth at step connect."""
    agent.faults.set("reject_tokens")
    result = await walk(golden_path(agent))
    assert result.reason == "auth"
    assert result.detail == "step 'connect': upgrade refused with HTTP 401"
    assert samples(result, STEP_SUCCESS) == {
        "login": 1, "connect": 0, "ask": 0, "answer": 0, "bye": 0}
    assert samples(result, RESPONSES) == {"200/unclassified": 1, "401/unclassified": 1}


async def test_upgrade_503_is_http_status(agent: AgentServer) -> None:
    """An upgrade answered 503 keeps its status: http_status, counted as a 503."""
    agent.faults.set("upgrade503")
    result = await walk(golden_path(agent))
    assert result.reason == "http_status"
    assert result.detail == "step 'connect': upgrade answered with HTTP 503"
    assert samples(result, RESPONSES)["503/unclassified"] == 1


async def test_upgrade_429_is_capacity(agent: AgentServer) -> None:
    """An upgrade answered 429 (max instances) is capacity."""
    agent.faults.set("upgrade429")
    result = await walk(golden_path(agent))
    assert result.reason == "capacity"
    assert result.detail == "step 'connect': upgrade refused with HTTP 429"


async def test_upgrade_origin_is_classified(agent: AgentServer) -> None:
    """Origins rules apply to every response, upgrades included."""
    agent.faults.set("upgrade503")
    origins = [{"name": "app", "header": "x-app-revision"},
               {"name": "platform", "header": "x-app-revision", "absent": True}]
    result = await walk(golden_path(agent), origins=origins)
    assert samples(result, RESPONSES) == {"200/platform": 1, "503/platform": 1}


async def test_close_1011_is_protocol_with_code(agent: AgentServer) -> None:
    """The server closing with 1011 is protocol at the expect step, code in the detail."""
    agent.faults.set("close1011")
    result = await walk(golden_path(agent))
    assert result.reason == "protocol"
    assert result.detail.startswith(
        "step 'answer': the server closed the WebSocket with code 1011 (agent failed)")
    assert samples(result, STEP_SUCCESS)["answer"] == 0


async def test_silence_times_out_at_the_expect_step(agent: AgentServer) -> None:
    """No answer is timeout at step answer, classified by the probe before the runner's backstop."""
    agent.faults.set("silent")
    answer = {"json_match": {"type": "agent_response"}, "timeout": "500ms"}
    result = await walk(golden_path(agent, answer=answer), timeout="2s")
    assert result.reason == "timeout"
    assert result.detail == (
        "step 'answer': timeout after 500ms waiting for json_match {type: agent_response} "
        "(1 other message skipped)")
    assert samples(result, STEP_SUCCESS) == {
        "login": 1, "connect": 1, "ask": 1, "answer": 0, "bye": 0}
    assert await no_sockets_left(agent), "the WebSocket must be closed after a failure"


async def test_journey_timeout_bounds_steps_without_their_own(agent: AgentServer) -> None:
    """A step without a timeout gets what is left of the journey's, and says so."""
    agent.faults.set("silent")
    answer = {"json_match": {"type": "agent_response"}}
    result = await walk(golden_path(agent, answer=answer), timeout="1s")
    assert result.reason == "timeout"
    assert result.detail.startswith("step 'answer': timeout after ")
    assert "(what was left of the journey's 1s) waiting for json_match" in result.detail


async def test_wrong_type_is_skipped_until_the_cap(agent: AgentServer) -> None:
    """Non-matching messages are skipped up to max_skipped, then it is an assertion."""
    agent.faults.set("wrong_type")
    answer = {"json_match": {"type": "agent_response"}, "timeout": "2s", "max_skipped": 5}
    result = await walk(golden_path(agent, answer=answer))
    assert WRONG_TYPE_MESSAGES > 5  # the agent sends more than the cap
    assert result.reason == "assertion"
    assert result.detail == (
        "step 'answer': 6 messages did not match json_match {type: agent_response} "
        "(max_skipped 5); the last was type 'agent_thinking'")


async def test_messages_under_the_cap_are_skipped(agent: AgentServer) -> None:
    """connection_ready (not the answer) is skipped and the answer still found."""
    answer = {"json_match": {"type": "agent_response"}, "timeout": "1s", "max_skipped": 1}
    result = await walk(golden_path(agent, answer=answer), debug=True)
    assert result.ok, result.detail
    assert any('connection_ready' in line for line in result.trace)


async def test_message_larger_than_the_cap_fails(agent: AgentServer) -> None:
    """A message over max_message_bytes fails the expect step with assertion."""
    steps = golden_path(agent)
    steps[1]["ws_connect"]["max_message_bytes"] = 10
    result = await walk(steps)
    assert result.reason == "assertion"
    assert result.detail == "step 'answer': a message is larger than max_message_bytes"


async def test_regex_match_and_literal_dollar(agent: AgentServer) -> None:
    """`$$` is a literal `$` in what is sent; a regex expectation matches the echo."""
    steps = golden_path(agent, answer={"regex": r"pong: costs \$$5", "timeout": "1s"})
    steps[2]["ws_send"]["json"]["text"] = "costs $$5"
    result = await walk(steps)
    assert result.ok, result.detail
    steps[3]["ws_expect"] = {"json_match": {"text": "pong: costs $$5"}, "timeout": "1s"}
    result = await walk(steps)
    assert result.ok, result.detail


async def test_extract_that_finds_nothing_fails_its_step(agent: AgentServer) -> None:
    """An extract with no value fails the extracting step with a clear detail."""
    steps = golden_path(agent)
    steps[0]["http"]["extract"] = {"token": "$.access_token"}
    result = await walk(steps)
    assert result.reason == "assertion"
    assert result.detail == "step 'login': extract token: $.access_token found nothing"
    assert agent.state.upgrades == 0


async def test_regex_extract(agent: AgentServer) -> None:
    """A regex with one group extracts too."""
    steps = golden_path(agent)
    steps[0]["http"]["extract"] = {"token": '"token": *"([^"]+)"'}
    result = await walk(steps)
    assert result.ok, result.detail


async def test_body_regex_mismatch_is_assertion(agent: AgentServer) -> None:
    """expect.body_regex applies to an http step's body."""
    steps = [{"name": "health", "http": {"url": f"{agent.url}/health",
                                         "expect": {"body_regex": '"healthy"'}}}]
    result = await walk(steps)
    assert result.reason == "assertion"
    assert result.detail == "step 'health': body does not match body_regex '\"healthy\"'"


async def test_extracted_token_never_leaves_the_probe(agent: AgentServer) -> None:
    """The token is absent from logs, detail, trace, facts and /api/status."""
    steps = golden_path(agent)
    # Put the token where a detail and a trace would show it: a URL that hangs.
    async with silent_server() as hang:
        steps[2:] = [{"name": "fetch", "http": {
            "url": f"{hang}/data?access_token=${{token}}&t2=${{token}}", "timeout": "300ms"}}]
        cfg, redactor = load(steps)
        probe = JourneyProbe(cfg)
        recorder = Recorder(Metrics(CollectorRegistry()))
        recorder.register(cfg, probe.registration_samples())
        with capture_logs() as logs:
            result = await run_once(probe, redactor=redactor, debug=True)
            recorder.record(result)
    [token] = list(agent.state.tokens)
    assert result.reason == "timeout"
    assert "waiting for the response to GET" in result.detail
    assert "<redacted>" in result.detail
    assert any("Bearer <redacted>" in line for line in result.trace)
    assert [e["event"] for e in logs] == ["probe failed"]
    assert "<redacted>" in logs[0]["detail"]
    status = build_status(recorder, {}, redactor)
    assert "step 'fetch': timeout after 300ms" in json.dumps(status)
    everything = json.dumps([logs, result.detail, result.trace, result.facts, status,
                             [s.labels for s in result.samples]], default=str)
    assert token not in everything
    assert DEMO_PASSWORD not in everything


@pytest.mark.parametrize("action", ["http", "ws_connect"])
async def test_no_retry_on_reset(action: str) -> None:
    """A reset connection is connection_reset, and the request is sent exactly once."""
    async with reset_server() as server:
        if action == "http":
            step = {"name": "get", "http": {"method": "GET", "url": f"{server.url}/health"}}
        else:
            url = server.url.replace("http://", "ws://") + "/ws"
            step = {"name": "get", "ws_connect": {"url": url}}
        result = await walk([step])
    assert result.reason == "connection_reset"
    assert result.detail.startswith("step 'get': ")
    assert server.requests == 1


async def test_connection_refused_names_the_step() -> None:
    """A refused connect is connect_refused at the step that made it."""
    async with reset_server() as server:
        url = server.url
    result = await walk([{"name": "login", "http": {"url": f"{url}/auth/login"}}])
    assert result.reason == "connect_refused"
    assert result.detail.startswith("step 'login': connecting to 127.0.0.1:")


def test_default_timeout_sums_step_timeouts() -> None:
    """Without a timeout, a journey gets its steps' timeouts plus the global timeout."""
    text = yaml.safe_dump({"global": {"timeout": "5s", "interval": "1m"}, "probes": [{
        "name": "j", "kind": "journey", "steps": [
            {"name": "a", "http": {"url": "http://127.0.0.1:1/", "timeout": "2s"}},
            {"name": "b", "ws_connect": {"url": "ws://127.0.0.1:1/ws"}},
            {"name": "c", "ws_expect": {"regex": "x", "timeout": "20s"}},
        ]}]})
    assert parse_config(text, {}, kinds=PROBE_KINDS).probes[0].timeout == 27.0


def test_variable_from_an_earlier_step_is_accepted() -> None:
    """`${token}` after the step that extracts it loads; `$${x}` is no variable."""
    cfg, _ = load([
        {"name": "login", "http": {"url": "http://127.0.0.1:1/login",
                                   "extract": {"token": "$.token"}}},
        {"name": "me", "http": {"url": "http://127.0.0.1:1/me?t=${token}&p=$${x}"}},
    ])
    assert cfg.steps[1].http is not None
    assert cfg.steps[1].http.url == "http://127.0.0.1:1/me?t=${token}&p=$${x}"


async def test_fault_switch_over_http(agent: AgentServer) -> None:
    """The demo flips the agent's faults with POST /fault/<mode>; unknown modes are refused."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{agent.url}/fault/silent") as response:
            assert response.status == 200
        async with session.post(f"{agent.url}/fault/melt") as response:
            assert response.status == 400
    assert agent.faults.mode == "silent"


async def test_https_and_wss_with_a_private_ca(tmp_path: Path) -> None:
    """Login over https and the WebSocket over wss verify against `tls.ca_file`."""
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with serve_agent(ssl_context=server_ssl) as agent:
        steps = golden_path(agent)
        unverified = await walk(steps)
        steps[0]["http"]["tls"] = {"ca_file": str(ca_file)}
        steps[1]["ws_connect"]["tls"] = {"ca_file": str(ca_file)}
        verified = await walk(steps)
    assert unverified.reason == "tls"
    assert unverified.detail.startswith("step 'login': TLS handshake with 127.0.0.1:")
    assert verified.ok, verified.detail


def redirecting_app() -> web.Application:
    """/start redirects to /end (which echoes the User-Agent); /loop to itself."""

    async def start(request: web.Request) -> web.Response:
        raise web.HTTPFound("/end")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def end(request: web.Request) -> web.Response:
        return web.json_response({"ua": request.headers.get("User-Agent")})

    app = web.Application()
    app.router.add_get("/start", start)
    app.router.add_get("/end", end)
    app.router.add_get("/loop", loop)
    return app


@pytest.mark.parametrize(("max_redirects", "reason", "counted"), [
    pytest.param(0, "http_status", {"302/unclassified": 1}, id="not-followed"),
    pytest.param(1, None, {"302/unclassified": 1, "200/unclassified": 1}, id="followed"),
    pytest.param(2, "http_status", {"302/unclassified": 3}, id="ran-out"),
])
async def test_redirects_are_counted(max_redirects: int, reason: str | None,
                                     counted: dict[str, float]) -> None:
    """Redirects are followed only up to max_redirects; every response is counted."""
    async with serve_app(redirecting_app()) as served:
        path = "/loop" if reason and max_redirects else "/start"
        step = {"name": "go", "http": {"url": f"{served.url}{path}",
                                       "max_redirects": max_redirects,
                                       "expect": {"body_regex": "monitor/"}}}
        result = await walk([step])
    assert result.reason == reason, result.detail
    assert samples(result, RESPONSES) == counted
    if reason and max_redirects:
        assert result.detail.startswith("step 'go': stopped after 2 redirects (max_redirects)")
    elif reason:
        assert result.detail == "step 'go': expected status 2xx, got 302"


async def test_http_steps_export_the_phases_of_kind_http() -> None:
    """http steps run on the house client: their dns/connect/ttfb/transfer phases are
    summed over the run into monitor_http_phase_duration_seconds, once per phase."""
    async with serve_app(redirecting_app()) as served:
        steps = [{"name": "one", "http": {"url": f"{served.url}/end"}},
                 {"name": "two", "http": {"url": f"{served.url}/end"}}]
        cfg, redactor = load(steps)
        probe = JourneyProbe(cfg)
        result = await run_once(probe, redactor=redactor)
    assert result.ok, result.detail
    phases = [dict(s.labels)["phase"] for s in result.samples
              if s.metric == "monitor_http_phase_duration_seconds"]
    assert sorted(phases) == ["connect", "transfer", "ttfb"]  # an IP literal: no dns
    assert served.connections == 2  # a fresh connection per step, nothing reused
    registered = {dict(s.labels).get("phase") for s in probe.registration_samples()
                  if s.metric == "monitor_http_phase_duration_seconds"}
    assert registered == {"dns", "connect", "tls", "ttfb", "transfer"}


async def test_a_websocket_lookup_that_never_got_a_thread_is_error(agent: AgentServer) -> None:
    """Every thread of the default executor busy (issue 13): the WebSocket step's lookup
    of `localhost` never starts, which is ours: `error` ("never started"), never `dns`.
    With threads free again, the same journey passes."""
    steps = [{"name": "connect", "ws_connect": {
        "url": agent.ws_url.replace("127.0.0.1", "localhost"), "timeout": "500ms"}}]
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blockers = [loop.run_in_executor(None, release.wait, 10) for _ in range(40)]
    try:
        result = await walk(steps, timeout="1s")
    finally:
        release.set()
        await asyncio.gather(*blockers)
    assert (result.ok, result.reason) == (False, "error"), result.detail
    assert "ours, not the target's" in result.detail
    assert "never started" in result.detail
    again = await walk(steps, timeout="1s")
    assert again.reason != "error", again.detail
