"""The daemon in-process: reloads, series removal, server routes, basic auth, secrets."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import structlog
from aiohttp import web

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.demo.backends import Faults, backend_app
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.probes import PROBE_KINDS
from monitor.redact import Redactor
from monitor.server import listen_address, make_app
from tests.support.http_servers import Served, serve_app

TOKEN = "s3cr3t-token-value-123"


def write_config(path: Path, url: str, *, extra_probe: bool = True, users: str = "") -> None:
    probes = f"""
  - name: web
    kind: http
    url: {url}/health
    headers: {{Authorization: "Bearer ${{API_TOKEN}}"}}
"""
    if extra_probe:
        probes += f"""
  - name: web-b
    kind: http
    url: {url}/health
    level: 3
"""
    path.write_text(f"""
global: {{interval: 1s, timeout: 500ms, labels: {{vantage: test}}}}
server: {{listen: "127.0.0.1:0"{users}}}
probes:{probes}
""")


@pytest.fixture
async def backend() -> AsyncIterator[tuple[Served, Faults]]:
    faults = Faults()
    async with serve_app(backend_app("backend-a", faults)) as served:
        yield served, faults


@pytest.fixture
async def daemon(tmp_path: Path, backend: tuple[Served, Faults],
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    path = tmp_path / "monitor.yaml"
    write_config(path, backend[0].url)
    config = load_config(path, kinds=PROBE_KINDS)
    redactor = Redactor(config.secrets)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()), redactor=redactor)
    await daemon.start()
    yield daemon
    await daemon.stop()


def sample(daemon: Daemon, name: str, **labels: str) -> float | None:
    return daemon.metrics.registry.get_sample_value(name, {"vantage": "test", **labels})


async def run_now(daemon: Daemon, name: str) -> None:
    await daemon._run(name)  # what the scheduler calls


async def test_reload_bad_file_keeps_running_config(daemon: Daemon) -> None:
    """A broken file on reload keeps every probe and sets the reload gauge to 0."""
    good = daemon.config_path.read_text()
    daemon.config_path.write_text(good + "\n  - {name: broken, kind: http}\n")
    problems = await daemon.reload()
    assert problems == ["probes[2].url (probe 'broken'): is required"]
    assert sample(daemon, "monitor_config_last_reload_success") == 0
    assert set(daemon.probes) == {"web", "web-b"}
    await run_now(daemon, "web")
    assert sample(daemon, "monitor_probe_success", probe="web", kind="http") == 1


async def test_reload_removed_probe_drops_its_series(daemon: Daemon,
                                                     backend: tuple[Served, Faults]) -> None:
    """A probe removed on reload leaves no series and no job; others are untouched."""
    await run_now(daemon, "web-b")
    assert sample(daemon, "monitor_probe_success", probe="web-b", kind="http") == 1
    write_config(daemon.config_path, backend[0].url, extra_probe=False)
    assert await daemon.reload() == []
    assert sample(daemon, "monitor_config_last_reload_success") == 1
    text = (await _get(daemon, "/metrics"))[1]
    assert 'probe="web-b"' not in text
    assert 'probe="web"' in text
    assert daemon.scheduler.job_names() == ["web"]


async def test_reload_changed_probe_is_rescheduled(daemon: Daemon,
                                                   backend: tuple[Served, Faults]) -> None:
    """A changed probe gets a new probe object; an unchanged one keeps its own."""
    before = {name: probe for name, (_, probe) in daemon.probes.items()}
    text = daemon.config_path.read_text().replace("level: 3", "level: 2")
    daemon.config_path.write_text(text)
    assert await daemon.reload() == []
    assert daemon.probes["web"][1] is before["web"]
    assert daemon.probes["web-b"][1] is not before["web-b"]
    assert sample(daemon, "monitor_probe_info", probe="web-b", kind="http", level="3",
                  layer="service", service="default", target=f"{backend[0].url}/health") is None


async def test_status_and_metrics_never_show_the_token(daemon: Daemon,
                                                       backend: tuple[Served, Faults]) -> None:
    """The Authorization token reaches the target but not /metrics, /api/status or logs."""
    backend[1].set("backend-a", "503")
    with structlog.testing.capture_logs() as logs:
        await run_now(daemon, "web")
    assert backend[0].requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    status, body = await _get(daemon, "/api/status")
    assert status == 200
    data = json.loads(body)
    web_probe = next(p for p in data["probes"] if p["name"] == "web")
    assert web_probe["last"]["reason"] == "http_status"
    assert data["recent_failures"][0]["probe"] == "web"
    for text in (body, (await _get(daemon, "/metrics"))[1], repr(logs)):
        assert TOKEN not in text


async def test_health_ready_and_reload_routes(daemon: Daemon) -> None:
    """/-/healthy and /-/ready answer 200; POST /-/reload reloads; GET is refused."""
    assert (await _get(daemon, "/-/healthy"))[0] == 200
    assert (await _get(daemon, "/-/ready"))[0] == 200
    async with _served(daemon) as base, aiohttp.ClientSession() as session:
        async with session.post(f"{base}/-/reload") as response:
            assert response.status == 200
            assert await response.json() == {"status": "success"}
        async with session.get(f"{base}/-/reload") as response:
            assert response.status == 405
        async with session.get(f"{base}/") as response:
            assert 'role="status"' in await response.text()


async def test_basic_auth_guards_every_route(tmp_path: Path, backend: tuple[Served, Faults],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With basic_auth_users, every route needs the right password."""
    monkeypatch.setenv("API_TOKEN", TOKEN)
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "monitor.yaml"
    write_config(path, backend[0].url, users=f", basic_auth_users: {{prom: '{hashed}'}}")
    config = load_config(path, kinds=PROBE_KINDS)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()),
                    redactor=Redactor(config.secrets))
    good = "Basic " + base64.b64encode(b"prom:right-password").decode()
    bad = "Basic " + base64.b64encode(b"prom:wrong").decode()
    async with _served(daemon) as base, aiohttp.ClientSession() as session:
        for route in ("/metrics", "/-/healthy", "/api/status", "/"):
            async with session.get(base + route) as response:
                assert response.status == 401
            async with session.get(base + route, headers={"Authorization": bad}) as response:
                assert response.status == 401
            async with session.get(base + route, headers={"Authorization": good}) as response:
                assert response.status == 200


def test_port_env_overrides_listen_port() -> None:
    """$PORT (Cloud Run) replaces the port of server.listen, keeping the host."""
    from monitor.config import ServerConfig

    server = ServerConfig(listen="0.0.0.0:9469")
    assert listen_address(server, {"PORT": "8080"}) == ("0.0.0.0", 8080)
    assert listen_address(server, {}) == ("0.0.0.0", 9469)


# -- helpers ---------------------------------------------------------------

class _served:
    """Serve the daemon's app on 127.0.0.1:0 for the duration of a block."""

    def __init__(self, daemon: Daemon) -> None:
        self.runner = web.AppRunner(make_app(daemon), access_log=None)

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def _get(daemon: Daemon, route: str) -> tuple[int, str]:
    async with _served(daemon) as base, aiohttp.ClientSession() as session, \
            session.get(base + route) as response:
        return response.status, await response.text()


async def test_two_shards_partition_the_probes(tmp_path: Path,
                                               backend: tuple[Served, Faults]) -> None:
    """`--shard 0/2` and `--shard 1/2` schedule disjoint sets that cover every probe."""
    path = tmp_path / "monitor.yaml"
    names = [f"probe-{i}" for i in range(12)]
    path.write_text("probes:\n" + "".join(
        f"  - {{name: {n}, kind: http, url: '{backend[0].url}/health'}}\n" for n in names))
    config = load_config(path, kinds=PROBE_KINDS)
    scheduled = []
    for index in (0, 1):
        daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()),
                        redactor=Redactor(), shard=(index, 2))
        await daemon.start()
        scheduled.append(set(daemon.scheduler.job_names()))
        await daemon.stop()
    assert scheduled[0].isdisjoint(scheduled[1])
    assert scheduled[0] | scheduled[1] == set(names)
    assert scheduled[0] and scheduled[1]


async def test_sql_app_timeout_change_keeps_series_of_unchanged_probes(tmp_path: Path) -> None:
    """Changing one sql probe's app_timeout re-registers that probe only: the ratio
    histogram has fixed buckets, so the other probe keeps its series and counts."""
    def write(app_timeout: str) -> None:
        path.write_text(f"""
probes:
  - {{name: db-a, kind: sql, driver: postgres, host: 127.0.0.1, port: 1, user: u,
      app_timeout: 5s, timeout: 10s, interval: 1m}}
  - {{name: db-b, kind: sql, driver: postgres, host: 127.0.0.1, port: 1, user: u,
      app_timeout: {app_timeout}, timeout: 10s, interval: 1m}}
""")

    path = tmp_path / "monitor.yaml"
    write("4s")
    daemon = Daemon(path, load_config(path, kinds=PROBE_KINDS),
                    metrics=Metrics(ConstLabelRegistry()),
                    redactor=Redactor())
    await daemon.start()
    try:
        registry = daemon.metrics.registry
        ratio = "monitor_sql_connect_app_timeout_ratio"
        daemon.metrics.named(ratio).labels("db-a", "sql").observe(0.5)  # a run's worth of data
        write("2s")
        assert await daemon.reload() == []
        a, b = {"probe": "db-a", "kind": "sql"}, {"probe": "db-b", "kind": "sql"}
        assert registry.get_sample_value(f"{ratio}_count", a) == 1
        assert registry.get_sample_value(f"{ratio}_count", b) == 0
        assert registry.get_sample_value(f"{ratio}_bucket", {**b, "le": "0.8"}) == 0
        assert registry.get_sample_value("monitor_sql_app_timeout_seconds", b) == 2.0
        assert registry.get_sample_value("monitor_sql_connect_duration_seconds_count", b) == 0
    finally:
        await daemon.stop()


async def test_reload_keeps_the_running_server_settings(daemon: Daemon) -> None:
    """Server settings changed on reload take effect on restart only: the daemon keeps its own."""
    running = daemon.config.server
    text = daemon.config_path.read_text().replace('listen: "127.0.0.1:0"',
                                                  'listen: "127.0.0.1:1"')
    daemon.config_path.write_text(text)
    assert await daemon.reload() == []
    assert daemon.config.server == running


async def test_reload_with_new_jitter_reschedules_every_probe(daemon: Daemon) -> None:
    """A changed global jitter (or verdict window) builds every probe anew."""
    before = {name: probe for name, (_, probe) in daemon.probes.items()}
    daemon.config_path.write_text(daemon.config_path.read_text().replace(
        "timeout: 500ms,", "timeout: 500ms, jitter: 0.2,"))
    assert await daemon.reload() == []
    assert all(daemon.probes[name][1] is not probe for name, probe in before.items())
    assert set(daemon.scheduler.job_names()) == set(before)


async def test_metrics_name_filter_keeps_constant_labels(daemon: Daemon) -> None:
    """`/metrics?name[]=...` returns only those series, still with global.labels."""
    status, text = await _get(daemon, "/metrics?name[]=monitor_probe_info")
    assert status == 200
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples
    assert all(line.startswith("monitor_probe_info{") and 'vantage="test"' in line
               for line in samples)
