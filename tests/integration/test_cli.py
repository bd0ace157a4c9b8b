"""The `monitor` command as users run it: validate, check exit codes and JSON, run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from monitor.config import parse_config
from monitor.demo.backends import Faults, backend_app
from monitor.demo.stack import DemoStack, demo_config_text, postgres_environ
from monitor.probes import PROBE_KINDS
from tests.support.http_servers import Served, serve_app
from tests.support.ports import free_port

TOKEN = "cli-secret-token-456"


@pytest.fixture
async def backend() -> AsyncIterator[tuple[Served, Faults]]:
    faults = Faults()
    async with serve_app(backend_app("backend-a", faults)) as served:
        yield served, faults


async def monitor(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "API_TOKEN": TOKEN, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def config(tmp_path: Path, url: str, *, load_level_url: str | None = None,
           interval: str = "1s") -> Path:
    path = tmp_path / "monitor.yaml"
    text = f"""
global: {{interval: {interval}, timeout: 500ms}}
probes:
  - name: web
    kind: http
    url: {url}/health
    headers: {{Authorization: "Bearer ${{API_TOKEN}}"}}
"""
    if load_level_url:
        text += f"""
  - name: peak
    kind: http
    level: 4
    url: {load_level_url}
"""
    path.write_text(text)
    return path


async def test_check_operational_exits_0_with_json(tmp_path: Path,
                                                   backend: tuple[Served, Faults]) -> None:
    """A healthy endpoint: verdict operational, exit 0, the JSON keys of docs/architecture.md."""
    code, out, _ = await monitor("check", "-c", str(config(tmp_path, backend[0].url)),
                                 "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["verdict"] == "operational"
    (probe,) = report["probes"]
    assert {"name", "kind", "level", "runs", "successes", "success_ratio", "ci_low",
            "ci_high", "last_reason", "duration_seconds"} <= set(probe)
    assert probe["runs"] == probe["successes"] == 1


async def test_check_503_is_broken_with_http_status(tmp_path: Path,
                                                    backend: tuple[Served, Faults]) -> None:
    """A 503 endpoint: the table says http_status and the exit status is 1."""
    backend[1].set("backend-a", "503")
    code, out, _ = await monitor("check", "-c", str(config(tmp_path, backend[0].url)))
    assert code == 1
    assert "http_status" in out
    assert "verdict: broken" in out


async def test_check_failing_load_level_is_partial(tmp_path: Path,
                                                   backend: tuple[Served, Faults]) -> None:
    """Only a level-4 probe failing: partial, exit 2."""
    backend_url = backend[0].url
    path = config(tmp_path, backend_url, load_level_url=f"{backend_url}/missing")
    code, out, _ = await monitor("check", "-c", str(path))
    assert code == 2, out
    assert "verdict: partial" in out


async def test_check_config_error_exits_3(tmp_path: Path) -> None:
    """An invalid config: every problem on stderr, exit 3 (check and validate alike)."""
    path = tmp_path / "bad.yaml"
    path.write_text("probes:\n  - {name: a, kind: http}\n  - {name: a, kind: tls}\n")
    for command in ("check", "validate"):
        code, _, err = await monitor(command, "-c", str(path))
        assert code == 3
        assert "probes[0].url (probe 'a'): is required" in err
        assert "probes[1].target (probe 'a'): is required" in err
        assert "probes[1].name (probe 'a'): duplicate name, already used by probes[0]" in err


async def test_check_too_few_samples_is_inconclusive(tmp_path: Path,
                                                     backend: tuple[Served, Faults]) -> None:
    """A few clean runs cannot show < 5 % failures: exit 4 and the runs a decision needs."""
    path = config(tmp_path, backend[0].url, interval="2s")
    code, out, _ = await monitor("check", "-c", str(path), "--duration", "1s",
                                 "--every", "200ms", "--format", "json")
    assert code == 4
    report = json.loads(out)
    (probe,) = report["probes"]
    assert report["verdict"] == "inconclusive"
    assert 1 <= probe["runs"] <= 6
    assert probe["samples_needed"] == 73


async def test_check_debug_trace_redacts_the_token(tmp_path: Path,
                                                   backend: tuple[Served, Faults]) -> None:
    """--debug prints request and response heads with the Authorization value hidden."""
    code, out, err = await monitor("check", "-c", str(config(tmp_path, backend[0].url)),
                                   "--debug")
    assert code == 0
    assert "phase connect" in out
    assert TOKEN not in out + err
    assert backend[0].requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_check_selects_by_probe_and_level(tmp_path: Path,
                                                backend: tuple[Served, Faults]) -> None:
    """--probe and --level choose what runs; an unknown name is an error (exit 3)."""
    backend_url = backend[0].url
    path = config(tmp_path, backend_url, load_level_url=f"{backend_url}/missing")
    code, out, _ = await monitor("check", "-c", str(path), "--level", "1", "--format", "json")
    assert code == 0
    assert [p["name"] for p in json.loads(out)["probes"]] == ["web"]
    code, _, err = await monitor("check", "-c", str(path), "--probe", "nope")
    assert code == 3
    assert "no probe named 'nope'" in err


async def test_validate_ok_and_default_path(tmp_path: Path) -> None:
    """validate exits 0; without -c it reads $MONITOR_CONFIG."""
    path = config(tmp_path, "https://example.test")
    code, out, _ = await monitor("validate", env={"MONITOR_CONFIG": str(path)})
    assert code == 0
    assert "valid, 1 probes" in out


def test_example_configs_are_valid() -> None:
    """Every config/*.yaml validates through the CLI (secrets from the environment)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DB_PASSWORD": "x", "PROBE_PASSWORD": "x", "API_TOKEN": "x"}
    paths = sorted((root / "config").glob("*.yaml"))
    assert paths
    for path in paths:
        result = subprocess.run([sys.executable, "-m", "monitor", "validate", "-c", str(path)],
                                capture_output=True, text=True, env=env, timeout=60, check=False)
        assert result.returncode == 0, result.stderr


async def test_demo_config_is_valid_against_the_demo_stack() -> None:
    """The bundled demo config (with its PostgreSQL part) loads with the stack's values."""
    async with DemoStack() as stack:
        environ = {**stack.environ, "DEMO_PORT": "9469",
                   **postgres_environ("postgresql://app:pw@127.0.0.1:5432/app")}
        config = parse_config(demo_config_text(postgres=True), environ, kinds=PROBE_KINDS)
    assert {p.layer for p in config.probes} == {"edge", "service", "egress", "database"}
    assert "pw" not in repr(config)


async def test_run_serves_metrics_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path, backend: tuple[Served, Faults]
) -> None:
    """`monitor run` with $PORT: /metrics has the documented names; SIGHUP reloads; SIGTERM: 0."""
    path = config(tmp_path, backend[0].url)
    port = free_port()
    path.write_text(path.read_text() + 'server: {listen: "127.0.0.1:1"}\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "-c", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "API_TOKEN": TOKEN, "PORT": str(port)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            text = await _wait_for_metric(session, base, 'monitor_probe_success{kind="http"')
            for name in ("monitor_probe_info", "monitor_probe_duration_seconds_bucket",
                         "monitor_probe_runs_total", "monitor_http_phase_duration_seconds",
                         "monitor_http_responses_total", "monitor_build_info",
                         "monitor_verdict", "monitor_config_last_reload_success 1.0"):
                assert name in text
            assert "_created" not in text
            assert TOKEN not in text
            path.write_text(path.read_text().replace("name: web", "name: web2"))
            process.send_signal(signal.SIGHUP)
            text = await _wait_for_metric(session, base, 'probe="web2"')
            assert 'probe="web"' not in text
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    logs = (await process.stderr.read()).decode()
    assert code == 0, logs
    assert TOKEN not in logs
    assert '"event": "daemon stopped"' in logs


async def _wait_for_metric(session: aiohttp.ClientSession, base: str, needle: str) -> str:
    """Poll /metrics until ``needle`` appears (bounded: 100 tries, 10 s)."""
    text = ""
    for _ in range(100):
        try:
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
            if needle in text:
                return text
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} not in /metrics after 10 s:\n{text[-2000:]}")


@pytest.mark.parametrize("port", ["0", "65535"])
async def test_demo_refuses_a_port_whose_next_one_is_not_free_to_take(port: str) -> None:
    """The fault switches listen on --port + 1: 0 would put them on port 1."""
    status, out, _ = await monitor("demo", "--port", port)
    assert status == 3
    assert f"--port must be 1-65534 (the fault switches listen on the next port), got {port}" \
        in out
