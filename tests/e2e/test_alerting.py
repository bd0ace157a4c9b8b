"""End to end: the daemon, a real Prometheus with the repo's rules, a real
Alertmanager with the repo's routing, and a webhook receiver in the test.

`monitor run` probes services on 127.0.0.1; Prometheus scrapes it and
evaluates the shipped rules every 250 ms, with every window and `for`
shortened by the tested table of ``tests.e2e.shortwindows`` (5m -> 10s);
Alertmanager runs the shipped config with the receivers pointed at the
test. The api service is flipped to 503 (and the agent of the golden path
to refusing its WebSocket upgrade): the page arrives at the pager
receiver; the service is restored: the resolved notification arrives. In
the same run every query of every dashboard panel must return data from
that Prometheus.

The measured time to page is printed (run with ``-s``) and recorded in
docs/alerting.md; it is not asserted (timing belongs in bench/).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from monitor.demo.agent import DEMO_PASSWORD
from monitor.demo.echo import EchoServer
from monitor.scheduler import first_run_offset
from tests.e2e.dashboards import PanelQuery, expand, panel_queries
from tests.e2e.promstack import (
    Process,
    Webhook,
    alertmanager,
    free_port,
    missing_binaries,
    prometheus,
    query,
    spawn,
    wait_for_query,
    wait_ready,
    webhook,
)
from tests.support.agent import AgentServer, serve_agent
from tests.support.databases import PostgresServer, missing_postgres
from tests.support.http_servers import Certs, Served, serve_app

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(missing_binaries() is not None, reason=missing_binaries() or ""),
]

VANTAGE = "e2e"
API_PROBE = "api-health"


def name_with_first_run(prefix: str, interval: float, low: float, high: float) -> str:
    """A probe name whose first run falls between ``low`` and ``high`` seconds
    after the daemon starts (the scheduler spreads first runs by a hash of the
    name): burst and load run rarely, and their first run must come after
    Prometheus's first scrape, so that their counters have a baseline."""
    for i in range(100_000):
        name = f"{prefix}-{i}"
        if low <= first_run_offset(name, interval) <= high:
            return name
    raise AssertionError("no such name")


BURST_PROBE = name_with_first_run("vpc-echo", 60.0, 12.0, 18.0)
LOAD_PROBE = name_with_first_run("peak", 300.0, 12.0, 18.0)


@dataclass
class Switch:
    """The api service's state: 200 with the application's header, or a bare 503
    (as the platform answers when no instance is ready)."""

    failing: bool = False


def api_app(switch: Switch) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        if switch.failing:
            return web.Response(status=503, text="Service Unavailable")
        return web.json_response({"status": "ok"}, headers={"x-app-revision": "api-1"})

    app = web.Application()
    app.router.add_get("/health", health)
    return app


def stable_app() -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"},
                                 headers={"x-app-revision": "s-1", "x-served-by": "backend-a"})

    app = web.Application()
    app.router.add_get("/health", health)
    return app


def daemon_config(port: int, api: Served, stable: Served, tls: Served, ca_file: Path,
                  agent: AgentServer, echo_port: int, sql: PostgresServer | None) -> str:
    origins = """
    origins:
      - {name: service, header: x-app-revision}
      - {name: platform, header: x-app-revision, absent: true}"""
    probes = f"""
  # 4 responses per second: 40 per (shortened) 10s window, above the 20 guard.
  - name: {API_PROBE}
    kind: http
    layer: service
    service: api
    url: {api.url}/health
    interval: 250ms
    timeout: 200ms
    expect: {{status: [200]}}{origins}
  - name: stable-lb
    kind: lb
    layer: edge
    service: stable
    url: {stable.url}/health
    requests: 4
    concurrency: 2
    backend_header: x-served-by
    per_address: true{origins}
  - name: stable-cert
    kind: tls
    layer: edge
    service: stable
    target: {tls.target}
    tls: {{ca_file: "{ca_file}"}}
  - name: golden-path
    kind: journey
    level: 2
    service: agent
    interval: 1s
    timeout: 900ms
    steps:
      - name: login
        http: {{method: POST, url: "{agent.url}/auth/login", timeout: 300ms,
               json: {{user: probe, password: "${{AGENT_PASSWORD}}"}},
               expect: {{status: [200]}}, extract: {{token: "$.token"}}}}
      - name: connect
        ws_connect: {{url: "{agent.ws_url}", timeout: 300ms,
                     headers: {{Authorization: "Bearer ${{token}}"}}}}
      - name: ask
        ws_send: {{json: {{type: user_message, text: ping}}}}
      - name: answer
        ws_expect: {{json_match: {{type: agent_response}}, timeout: 250ms}}
      - name: bye
        ws_close: null
  - name: {BURST_PROBE}
    kind: burst
    level: 3
    layer: egress
    service: stable
    target: 127.0.0.1:{echo_port}
    payload_bytes: 64
    steps: [2, 4]
    slow_threshold: 500ms
    step_timeout: 1s
    interval: 60s
  # Our own load test, on its own service (it must never page anyway).
  - name: {LOAD_PROBE}
    kind: load
    level: 4
    layer: edge
    service: loadtarget
    url: {stable.url}/health
    rate: 20
    duration: 2s
    request_timeout: 500ms
    interval: 300s
"""
    if sql is not None:
        probes += "  - " + sql.probe_yaml("cloudsql", app_timeout="500ms", interval="1s",
                                          timeout="900ms") + "\n"
    return f"""
global: {{interval: 1s, timeout: 500ms, jitter: 0.1, labels: {{vantage: {VANTAGE}}}}}
server: {{listen: "127.0.0.1:{port}"}}
probes:{probes}"""


@contextlib.asynccontextmanager
async def daemon(tmp: Path, port: int, config: str, env: dict[str, str],
                 ) -> AsyncIterator[Process]:
    """`monitor run -c FILE` as a user starts it."""
    path = tmp / "monitor.yaml"
    path.write_text(config)
    args = [sys.executable, "-m", "monitor", "run", "-c", str(path)]
    with spawn("daemon", args, tmp / "daemon.log", f"http://127.0.0.1:{port}",
               env={**os.environ, **env}) as proc:
        await wait_ready(proc)
        yield proc


@contextlib.asynccontextmanager
async def postgres() -> AsyncIterator[PostgresServer | None]:
    if missing_postgres() is not None:
        yield None
        return
    server = PostgresServer(max_connections=20)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


@dataclass
class Stack:
    switch: Switch
    agent: AgentServer
    prom: Process
    am: Process
    hook: Webhook
    sql: PostgresServer | None


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    certs = Certs(tmp_path)
    switch = Switch()
    async with contextlib.AsyncExitStack() as stack:
        api = await stack.enter_async_context(serve_app(api_app(switch)))
        stable = await stack.enter_async_context(serve_app(stable_app()))
        tls = await stack.enter_async_context(
            serve_app(stable_app(), ssl_context=certs.server_context()))
        agent = await stack.enter_async_context(serve_agent())
        echo = await stack.enter_async_context(EchoServer())
        sql = await stack.enter_async_context(postgres())
        hook = await stack.enter_async_context(webhook())
        am = await stack.enter_async_context(alertmanager(tmp_path / "am", hook.url))
        port = free_port()
        prom = await stack.enter_async_context(prometheus(
            tmp_path / "prom", f"127.0.0.1:{port}", am.url.removeprefix("http://"), VANTAGE))
        env = {"AGENT_PASSWORD": DEMO_PASSWORD}
        if sql is not None:
            env["DB_PASSWORD"] = sql.password
        await stack.enter_async_context(daemon(
            tmp_path, port, daemon_config(port, api, stable, tls, certs.ca_file, agent, echo.port,
                                    sql), env))
        yield Stack(switch, agent, prom, am, hook, sql)


def skip_reason(q: PanelQuery, stack: Stack) -> str | None:
    """Panels that cannot have data in this run, and why."""
    if stack.sql is None and "monitor_sql_" in q.expr:
        return f"no PostgreSQL here: {missing_postgres()}"
    return None


async def test_spike_pages_restore_resolves_and_every_panel_has_data(stack: Stack) -> None:
    """503s page through the shipped rules and routing, recovery resolves, panels have data."""
    async with aiohttp.ClientSession() as session:
        # A full (shortened) window of healthy traffic first, so the time to
        # page measures the rules and not the warm-up.
        await wait_for_query(session, stack.prom, 'up{job="monitor"} == 1', 30)
        await wait_for_query(
            session, stack.prom,
            f'probe:monitor_http_responses:increase5m{{probe="{API_PROBE}"}} >= 20', 30)
        assert not await query(session, stack.prom, 'ALERTS{alertname="MonitorHTTPErrorRatioHigh"}')

        stack.switch.failing = True
        stack.agent.faults.set("upgrade503")
        started = time.time()
        note, alert = await stack.hook.wait_for("MonitorHTTPErrorRatioHigh", "firing", 60)
        time_to_page = note.received - started
        assert note.receiver == "pager"
        assert alert["labels"]["probe"] == API_PROBE
        assert alert["labels"]["severity"] == "page"
        assert {k: alert["labels"][k] for k in ("service", "layer", "vantage")} == {
            "service": "api", "layer": "service", "vantage": VANTAGE}
        assert "503=" in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"] == "docs/runbooks/MonitorHTTPErrorRatioHigh.md"
        journey_note, journey = await stack.hook.wait_for("MonitorJourneyFailing", "firing", 60)
        assert journey_note.receiver == "pager"
        assert journey["labels"]["probe"] == "golden-path"

        # Every dashboard query, as Grafana sends it with every variable at
        # "All", returns at least one finite value from this Prometheus.
        # Burst and load run once, 12-18 s after the start: wait for them.
        await wait_for_query(session, stack.prom,
                             f'monitor_burst_capacity_concurrency{{probe="{BURST_PROBE}"}}', 30)
        await wait_for_query(session, stack.prom,
                             f'monitor_load_requests_total{{probe="{LOAD_PROBE}",code="200"}} > 0',
                             30)
        empty, skipped = [], []
        for q in panel_queries():
            reason = skip_reason(q, stack)
            if reason:
                skipped.append(f"{q.id}: {reason}")
                continue
            result = await query(session, stack.prom, expand(q.expr, rate_interval="1m"))
            values = [float(r["value"][1]) for r in result]
            if not any(math.isfinite(v) for v in values):
                empty.append(q.id)
        assert not empty, f"panels without data: {empty}"

        stack.switch.failing = False
        stack.agent.faults.set("ok")
        restored = time.time()
        note, _ = await stack.hook.wait_for("MonitorHTTPErrorRatioHigh", "resolved", 60)
        time_to_resolve = note.received - restored
        assert note.receiver == "pager"

    print(f"\ntime to page: {time_to_page:.1f}s, to resolved: {time_to_resolve:.1f}s "
          f"(windows 10s, for 10s, scrape/eval 250ms); skipped panels: {skipped or 'none'}")
