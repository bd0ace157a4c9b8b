"""`monitor demo` smoke test: it starts, every probe succeeds, it stops cleanly on SIGINT."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.support.demo import RunningDemo, running_demo

pytestmark = pytest.mark.e2e

# The slowest demo probe (the burst) runs once a minute; its first run falls
# somewhere in its first interval.
FIRST_INTERVAL = 60


async def wait_for(demo: RunningDemo, check: Any, seconds: float) -> dict[str, Any]:
    """Poll /api/status until ``check(status)`` holds (bounded: ``seconds``)."""
    status: dict[str, Any] = {}
    for _ in range(int(seconds * 4)):
        status = await demo.status()
        if check(status):
            return status
        await asyncio.sleep(0.25)
    raise AssertionError(f"condition not met in {seconds}s: {status}")


def every_probe_succeeded(status: dict[str, Any]) -> bool:
    return all(p["last"] is not None and p["last"]["ok"] for p in status["probes"])


async def test_demo_every_probe_succeeds_then_stops_on_sigint() -> None:
    """Every layer's probes succeed within their first interval; SIGINT exits 0 and says so."""
    async with running_demo() as demo:
        status = await wait_for(demo, every_probe_succeeded, FIRST_INTERVAL + 15)
        layers = {layer["layer"]: layer["state"] for layer in status["layers"]}
        assert layers == {"edge": "ok", "service": "ok", "egress": "ok", "database": "unknown"}
        kinds = {p["kind"] for p in status["probes"]}
        assert kinds == {"http", "tls", "lb", "journey", "tcp", "burst"}
        assert status["verdict"] == "operational"
        demo.process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(demo.process.wait(), timeout=15)
        assert demo.process.stdout is not None and demo.process.stderr is not None
        out = (await demo.process.stdout.read()).decode()
        logs = (await demo.process.stderr.read()).decode()
    assert code == 0, logs
    assert "curl -X POST" in out and "/fault/backend-b/503" in out
    assert "daemon stopped" in logs
    assert "demo-password" not in logs


async def test_demo_faults_reach_the_right_layer() -> None:
    """A backend's 503 shows on its direct probe and the lb; the agent's 1011 on the journey."""
    async with running_demo() as demo:
        await wait_for(demo, lambda s: all(
            p["last"] is not None for p in s["probes"] if p["kind"] != "burst"), 20)
        await demo.flip("backend-b", "503")
        await demo.flip("agent", "close1011")

        def broken(status: dict[str, Any]) -> bool:
            last = {p["name"]: p["last"] for p in status["probes"]}
            return all(last[name] and not last[name]["ok"]
                       for name in ("backend-b-direct", "edge-lb", "golden-path"))

        status = await wait_for(demo, broken, 20)
        last = {p["name"]: p["last"] for p in status["probes"]}
        assert last["backend-b-direct"]["reason"] == "http_status"
        assert "backend-b" in last["edge-lb"]["detail"]
        assert last["golden-path"]["reason"] == "protocol"
        assert "1011" in last["golden-path"]["detail"]
        assert last["backend-a-direct"]["ok"]
