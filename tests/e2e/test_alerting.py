"""End to end at the reference settings: a real daemon, Prometheus and
Alertmanager, nothing shortened.

`monitor run` probes services on 127.0.0.1 every 10 s (timeout 5 s);
Prometheus scrapes it and evaluates the shipped rules every 15 s;
Alertmanager runs the shipped config (group_wait 10 s for pages), with the
receivers pointed at a webhook in the test. After a healthy minute without a
page, four layers go dark at once: an endpoint flips to 503, another accepts
and never answers, the database path (a proxy in front of a real
PostgreSQL) accepts and never answers, and the golden-path journey's
WebSocket upgrade is refused. Every dashboard panel must have data before
the flip; each dark layer must page within 75 s, naming its layer, service
and reason; recovery must resolve every page. About four minutes.

The times are printed (run with ``-s``) and recorded in docs/alerting.md;
the model behind them (every alignment of runs, scrapes and evaluations)
is tests/unit/test_detection.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from tests.support.faultproxy import FaultProxy
from tests.support.http_servers import Certs, serve_app
from tests.support.ports import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.external,
    pytest.mark.skipif(missing_binaries() is not None, reason=missing_binaries() or ""),
]

VANTAGE = "e2e"
# The probes that go dark, and what their page must say.
DARK = {
    "api": "service layer of service api: http_status on api",
    "hang": "service layer of service api: timeout on hang",
    "db": "database layer of service api: connect_timeout on db",
    "golden-path": "service layer of service agent: http_status on golden-path",
}
PAGE_WITHIN = 75.0  # seconds from the flip (docs/alerting.md)
# The pages whose summary names the dominant failure reason.
RUN_PAGES = ("MonitorProbeDown", "MonitorProbeFailing")
RESOLVED_WITHIN = 150.0  # seconds from recovery; the model says at most 2 min


def name_with_first_run(prefix: str, interval: float, low: float, high: float) -> str:
    """A probe name whose first run falls between ``low`` and ``high`` seconds
    after the daemon starts (the scheduler spreads first runs by a hash of the
    name): burst and load run rarely, and must have run before the panels are
    checked."""
    for i in range(100_000):
        name = f"{prefix}-{i}"
        if low <= first_run_offset(name, interval) <= high:
            return name
    raise AssertionError("no such name")


BURST_PROBE = name_with_first_run("vpc-echo", 60.0, 25.0, 35.0)
LOAD_PROBE = name_with_first_run("peak", 300.0, 25.0, 35.0)


@dataclass
class Switches:
    """The state of the services that go dark."""

    failing: bool = False  # api answers a bare 503, as the platform does
    hanging: bool = False  # hang accepts, reads the request, and never answers
    released: asyncio.Event = field(default_factory=asyncio.Event)


def api_app(switches: Switches) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        if switches.failing:
            return web.Response(status=503, text="Service Unavailable")
        return web.json_response({"status": "ok"}, headers={"x-app-revision": "api-1"})

    app = web.Application()
    app.router.add_get("/health", health)
    return app


def hanging_app(switches: Switches) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        if switches.hanging:
            # The fault being simulated: no answer until the switch flips
            # back (bounded, so a forgotten switch cannot hold the test).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(switches.released.wait(), 120)
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


def daemon_config(port: int, urls: dict[str, str], tls_target: str, ca_file: Path,
                  agent: AgentServer, echo_port: int, db_proxy_port: int,
                  sql: PostgresServer) -> str:
    origins = """
    origins:
      - {name: service, header: x-app-revision}
      - {name: platform, header: x-app-revision, absent: true}"""
    database = sql.probe_yaml("db", port=db_proxy_port, layer="database", service="api",
                              app_timeout="2s", timeout="5s")
    return f"""
global: {{interval: 10s, timeout: 5s, labels: {{vantage: {VANTAGE}}}}}
server: {{listen: "127.0.0.1:{port}"}}
probes:
  - name: api
    kind: http
    service: api
    url: {urls["api"]}/health{origins}
  - name: hang
    kind: http
    service: api
    url: {urls["hang"]}/health
  - {database}
  - name: golden-path
    kind: journey
    level: 2
    service: agent
    steps:
      - name: login
        http: {{method: POST, url: "{agent.url}/auth/login", timeout: 1s,
               json: {{user: probe, password: "${{AGENT_PASSWORD}}"}},
               expect: {{status: [200]}}, extract: {{token: "$.token"}}}}
      - name: connect
        ws_connect: {{url: "{agent.ws_url}", timeout: 1s,
                     headers: {{Authorization: "Bearer ${{token}}"}}}}
      - name: ask
        ws_send: {{json: {{type: user_message, text: ping}}}}
      - name: answer
        ws_expect: {{json_match: {{type: agent_response}}, timeout: 1s}}
      - name: bye
        ws_close: null
  - name: stable-lb
    kind: lb
    layer: edge
    service: stable
    url: {urls["stable"]}/health
    requests: 4
    concurrency: 2
    backend_header: x-served-by
    per_address: true{origins}
  - name: stable-cert
    kind: tls
    layer: edge
    service: stable
    target: {tls_target}
    tls: {{ca_file: "{ca_file}"}}
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
    url: {urls["stable"]}/health
    rate: 10
    duration: 3s
    request_timeout: 1s
    interval: 300s
"""


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
async def postgres() -> AsyncIterator[PostgresServer]:
    reason = missing_postgres()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer(max_connections=20)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


@dataclass
class Stack:
    switches: Switches
    agent: AgentServer
    db_path: FaultProxy
    prom: Process
    hook: Webhook


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    certs = Certs(tmp_path)
    switches = Switches()
    async with contextlib.AsyncExitStack() as stack:
        served = {
            "api": await stack.enter_async_context(serve_app(api_app(switches))),
            "hang": await stack.enter_async_context(serve_app(hanging_app(switches))),
            "stable": await stack.enter_async_context(serve_app(stable_app())),
        }
        tls = await stack.enter_async_context(
            serve_app(stable_app(), ssl_context=certs.server_context()))
        agent = await stack.enter_async_context(serve_agent())
        echo = await stack.enter_async_context(EchoServer())
        sql = await stack.enter_async_context(postgres())
        db_path = FaultProxy((sql.host, sql.port))
        await stack.enter_async_context(db_path)
        hook = await stack.enter_async_context(webhook())
        am = await stack.enter_async_context(alertmanager(tmp_path / "am", hook.url))
        port = free_port()
        prom = await stack.enter_async_context(prometheus(
            tmp_path / "prom", f"127.0.0.1:{port}", am.url.removeprefix("http://"), VANTAGE))
        config = daemon_config(port, {k: s.url for k, s in served.items()}, tls.target,
                               certs.ca_file, agent, echo.port, db_path.port, sql)
        await stack.enter_async_context(daemon(
            tmp_path, port, config, {"AGENT_PASSWORD": DEMO_PASSWORD, "DB_PASSWORD": sql.password}))
        yield Stack(switches, agent, db_path, prom, hook)
        switches.released.set()


async def panels_without_data(session: aiohttp.ClientSession, prom: Process,
                              queries: list[PanelQuery]) -> list[PanelQuery]:
    """The panel queries that return no finite value over the last 5 minutes."""
    empty = []
    for q in queries:
        result = await query(session, prom, expand(q.expr, rate_interval="5m"))
        if not any(math.isfinite(float(r["value"][1])) for r in result):
            empty.append(q)
    return empty


@dataclass
class Paged:
    """What the pager got about one probe since a moment."""

    first: float  # when its first notification in the status arrived
    alerts: list[dict[str, Any]]  # every alert of the probe in that status


def pages(hook: Webhook, status: str, since: float = 0.0) -> dict[str, Paged]:
    """Pager notifications per probe with alerts in ``status``, from ``since``."""
    found: dict[str, Paged] = {}
    for note in hook.notifications:
        if note.receiver != "pager" or note.received < since:
            continue
        for alert in note.body.get("alerts", []):
            probe = alert["labels"].get("probe", "")
            if alert["status"] == status:
                found.setdefault(probe, Paged(note.received, [])).alerts.append(alert)
    return found


async def wait_for_pages(hook: Webhook, status: str, probes: set[str], since: float,
                         seconds: float) -> dict[str, Paged]:
    """Wait (bounded) until every one of ``probes`` has a notification in
    ``status``, and for a page, a down or failing alert too."""
    deadline = time.monotonic() + seconds

    def complete(got: dict[str, Paged]) -> bool:
        return probes <= set(got) and (status != "firing" or all(
            any(a["labels"]["alertname"] in RUN_PAGES for a in got[p].alerts) for p in probes))

    while True:
        got = pages(hook, status, since)
        if complete(got) or time.monotonic() > deadline:
            return got
        hook.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hook.arrived.wait(), 1.0)


async def test_every_dark_layer_pages_within_75s_at_the_reference_settings(
        stack: Stack) -> None:
    """A healthy minute pages nothing and fills every panel; 503, a hang, a
    dark database path and a broken golden path each page within 75 s naming
    layer, service and reason; recovery resolves every page."""
    async with aiohttp.ClientSession() as session:
        await wait_for_query(session, stack.prom, 'up{job="monitor"} == 1', 60)
        # A healthy minute of scrapes and evaluations, without a page.
        await wait_for_query(session, stack.prom,
                             'count_over_time(up{job="monitor"}[90s]) >= 5', 120)
        assert not pages(stack.hook, "firing"), "a page in the healthy minute"

        # Every dashboard query, as Grafana sends it with every variable at
        # "All" over the last 5 minutes, returns at least one finite value
        # from this Prometheus (burst and load have run once by now).
        await wait_for_query(session, stack.prom,
                             f'monitor_burst_capacity_concurrency{{probe="{BURST_PROBE}"}}', 60)
        await wait_for_query(session, stack.prom,
                             f'monitor_load_requests_total{{probe="{LOAD_PROBE}",code="200"}} > 0',
                             60)
        # Panels about failures (reasons) have data once something fails.
        empty = await panels_without_data(session, stack.prom,
                                          [q for q in panel_queries() if not q.optional])

        stack.switches.failing = True
        stack.switches.hanging = True
        stack.switches.released.clear()
        stack.db_path.set_faults(cap=0, hold=None)  # accepts, never answers
        stack.agent.faults.set("upgrade503")
        flipped = time.time()
        paged = await wait_for_pages(stack.hook, "firing", set(DARK), flipped, PAGE_WITHIN + 30)
        times = {p: paged[p].first - flipped for p in paged}
        for probe, summary in DARK.items():
            assert probe in paged, f"{probe} did not page within {PAGE_WITHIN + 30}s: {times}"
            assert times[probe] <= PAGE_WITHIN, times
            alerts = paged[probe].alerts
            assert all(a["labels"]["severity"] == "page" for a in alerts)
            assert all(a["labels"]["vantage"] == VANTAGE for a in alerts)
            summaries = {a["annotations"]["summary"] for a in alerts
                         if a["labels"]["alertname"] in RUN_PAGES}
            assert summaries == {summary}, alerts
        assert set(paged) == set(DARK), f"pages of healthy probes: {set(paged) - set(DARK)}"
        still = await panels_without_data(session, stack.prom, empty)
        assert not still, f"panels without data: {[q.id for q in still]}"

        stack.switches.failing = False
        stack.switches.hanging = False
        stack.switches.released.set()
        stack.db_path.set_faults(cap=None)
        stack.agent.faults.set("ok")
        recovered = time.time()
        resolved = await wait_for_pages(stack.hook, "resolved", set(DARK), recovered,
                                        RESOLVED_WITHIN)
        resolve_times = {p: resolved[p].first - recovered for p in resolved}
        assert set(resolved) >= set(DARK), resolve_times

    print(f"\ntime to page (s): { {p: round(t, 1) for p, t in sorted(times.items())} }"
          f"\ntime to resolved (s): { {p: round(t, 1) for p, t in sorted(resolve_times.items())} }")
