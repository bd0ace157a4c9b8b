"""`kind: burst` against a real echo server behind the fault-injecting proxy on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from monitor.config import parse_config
from monitor.config.burst import BurstProbeConfig
from monitor.metrics import Metrics
from monitor.probes import PROBE_KINDS
from monitor.probes.base import Result
from monitor.probes.burst import OUTCOMES, BurstProbe
from monitor.recorder import Recorder
from tests.support.faultproxy import (
    FaultProxy,
    Faults,
    client_sockets,
    echo_behind_proxy,
    wait_for,
)
from tests.support.running import run_probe

STEPS = [5, 10, 20, 40]


def config(port: int, **fields: Any) -> BurstProbeConfig:
    fields.setdefault("steps", STEPS)
    fields.setdefault("step_timeout", "5s")
    return BurstProbeConfig(name="vpc", kind="burst", target=f"127.0.0.1:{port}",
                            interval="5m", timeout="30s", **fields)


async def run(cfg: BurstProbeConfig) -> tuple[Result, Recorder, CollectorRegistry]:
    """One run through the runner, its samples applied by a real recorder."""
    registry = CollectorRegistry()
    recorder = Recorder(Metrics(registry))
    probe = BurstProbe(cfg)
    recorder.register(cfg, probe.registration_samples())
    result = await run_probe(probe, debug=True)
    recorder.record(result)
    return result, recorder, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"probe": "vpc", "kind": "burst", **labels})


async def all_closed(proxy: FaultProxy) -> bool:
    """The probe holds no socket towards the proxy (bounded wait: an abort
    closes its socket on the next loop iteration)."""
    return await wait_for(lambda: client_sockets(proxy.port) == 0)


async def test_no_cap_completes_the_ramp() -> None:
    """Nothing saturates: every step passes, ramp_complete is 1, the knee is above 40."""
    async with echo_behind_proxy() as proxy:
        result, _, registry = await run(config(proxy.port))
        assert await all_closed(proxy)
    assert result.ok, result.detail
    assert value(registry, "monitor_burst_ramp_complete") == 1
    assert value(registry, "monitor_burst_capacity_concurrency") == 40
    assert value(registry, "monitor_burst_connections_total", step="40", outcome="ok") == 40
    assert proxy.accepted == sum(STEPS)
    assert value(registry, "monitor_burst_connect_duration_seconds_count") == sum(STEPS)


async def test_connection_cap_sets_the_knee_and_stops_the_ramp() -> None:
    """A proxy carrying 20 connections (more wait 50 ms, then RST): knee 20, no step after 40."""
    # Each admitted connection holds its slot for 500 ms, so the 40 of the
    # last step really overlap; the 200 ms hold absorbs the time the proxy
    # takes to notice the previous step's closes, with room on a loaded
    # machine both ways (and 500 ms of slack below the 1 s slow threshold).
    faults = Faults(cap=20, hold=0.2, latency=0.5)
    async with echo_behind_proxy(faults) as proxy:
        result, _, registry = await run(config(proxy.port, steps=[*STEPS, 80]))
        assert await all_closed(proxy)
    assert result.ok, result.detail  # min_capacity defaults to the first step
    assert value(registry, "monitor_burst_capacity_concurrency") == 20
    assert value(registry, "monitor_burst_ramp_complete") == 0
    assert value(registry, "monitor_burst_connections_total", step="20", outcome="ok") == 20
    assert value(registry, "monitor_burst_connections_total", step="40", outcome="failed") == 20
    # The ramp stopped at 40: step 80 never ran (its series stay at zero).
    assert value(registry, "monitor_burst_connections_total", step="80", outcome="ok") == 0
    assert proxy.accepted == sum(STEPS)
    assert proxy.peak_active == 20
    assert "ramp stopped at step 40" in result.detail
    assert "connection_reset" in result.detail
    assert [s["step"] for s in result.facts["steps"]] == STEPS


async def test_knee_below_min_capacity_fails_with_capacity() -> None:
    """The same saturation with min_capacity 25 fails the run with reason capacity."""
    async with echo_behind_proxy(Faults(cap=20, hold=0.2, latency=0.5)) as proxy:
        result, _, _ = await run(config(proxy.port, min_capacity=25))
    assert (result.ok, result.reason) == (False, "capacity")
    assert result.detail.startswith("capacity 20 is below min_capacity 25")


async def test_bandwidth_cap_makes_transfers_slow_and_lowers_the_knee() -> None:
    """1 MiB/s through the proxy: 30 KiB echoes go slow from 10 connections on; knee < 20."""
    # Step N moves 2 x N x 30 KiB through the shared 1 MiB/s: ~0.29 s at 5,
    # ~0.59 s at 10; slow_threshold sits between them with margin both ways.
    faults = Faults(bandwidth=1024 * 1024)
    async with echo_behind_proxy(faults) as proxy:
        result, _, registry = await run(config(proxy.port, payload_bytes=30 * 1024,
                                               slow_threshold="420ms"))
        assert await all_closed(proxy)
    assert value(registry, "monitor_burst_ramp_complete") == 0
    capacity = value(registry, "monitor_burst_capacity_concurrency")
    assert capacity is not None and capacity < 20
    failing = result.facts["steps"][-1]
    assert failing["slow"] > 0 and failing["failed"] == 0 and failing["timeout"] == 0


async def test_nothing_listening_fails_with_the_cause_not_capacity(free_port: int) -> None:
    """No connection of the run got through: the reason is the cause (connect_refused)."""
    result, _, registry = await run(config(free_port))
    assert (result.ok, result.reason) == (False, "connect_refused")
    assert value(registry, "monitor_burst_capacity_concurrency") == 0
    assert value(registry, "monitor_burst_connections_total", step="5", outcome="failed") == 5
    assert value(registry, "monitor_burst_connections_total", step="10", outcome="failed") == 0


async def test_step_timeout_counts_timeouts() -> None:
    """Connections held past step_timeout end as timeout and end the ramp."""
    async with echo_behind_proxy(Faults(latency=2.0)) as proxy:
        result, _, registry = await run(config(proxy.port, step_timeout="200ms",
                                               slow_threshold="100ms"))
        assert await all_closed(proxy)
    assert (result.ok, result.reason) == (False, "timeout")
    assert value(registry, "monitor_burst_connections_total", step="5", outcome="timeout") == 5


async def test_cancelled_run_closes_every_socket() -> None:
    """Cancelling a run mid-step (reload, SIGTERM) leaves no connection open."""
    async with echo_behind_proxy(Faults(latency=30.0)) as proxy:
        cfg = config(proxy.port)
        task = asyncio.create_task(BurstProbe(cfg).run(_ctx()))
        assert await wait_for(lambda: proxy.accepted == 5)
        assert client_sockets(proxy.port) == 5  # the check sees the open ones
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await all_closed(proxy)
        assert proxy.accepted == 5


def _ctx() -> Any:
    from monitor.probes.base import RunContext
    return RunContext("vpc", "burst")


def test_initial_samples_cover_every_step_and_outcome() -> None:
    """Each step x outcome series exists at zero before the first run."""
    samples = BurstProbe(config(1)).initial_samples()
    pairs = {dict(s.labels)["step"] + "/" + dict(s.labels)["outcome"] for s in samples
             if s.metric == "monitor_burst_connections_total"}
    assert pairs == {f"{s}/{o}" for s in STEPS for o in OUTCOMES}
    assert all(s.value == 0 for s in samples)


@pytest.mark.parametrize(("fields", "message"), [
    pytest.param({"steps": [201]}, "less than or equal to 200", id="step-over-200"),
    pytest.param({"steps": list(range(1, 12))}, "at most 10", id="too-many-steps"),
    pytest.param({"payload_bytes": 2 * 1024 * 1024}, "less than or equal to", id="payload"),
])
def test_caps_are_validated(fields: dict[str, Any], message: str) -> None:
    """Field caps are enforced when loading."""
    with pytest.raises(ValidationError, match=message):
        config(1, **fields)


@pytest.mark.parametrize(("fields", "field"), [
    pytest.param({"steps": [10, 10]}, "steps", id="not-increasing"),
    pytest.param({"steps": [200] * 6}, "steps", id="per-run-cap"),
    pytest.param({"steps": [150, 160, 170], "interval": "90s"}, "interval", id="per-minute"),
    pytest.param({"min_capacity": 60}, "min_capacity", id="min-capacity-above-top"),
    pytest.param({"url": "http://127.0.0.1/"}, "target", id="target-and-url"),
    pytest.param({"timeout": "10s"}, "timeout", id="timeout-below-steps"),
    pytest.param({"interval": "30s", "timeout": "25s", "step_timeout": "1s"}, "interval",
                 id="interval-floor"),
])
def test_cross_field_caps(fields: dict[str, Any], field: str) -> None:
    """Caps spanning several fields are reported as problems naming the field."""
    base = {"steps": [10, 20, 40], "step_timeout": "5s", "timeout": "20s"}
    cfg = BurstProbeConfig(name="vpc", kind="burst", target="127.0.0.1:7",
                           **{"interval": "5m", **base, **fields})
    assert field in [f for f, _ in cfg.problems()]


async def test_url_mode_finds_the_knee_of_an_http_service() -> None:
    """An HTTP service answering 429 beyond 10 requests at once: knee 10, reason in detail."""
    state = {"in_flight": 0, "peak": 0}

    async def handle(request: web.Request) -> web.Response:
        if state["in_flight"] >= 10:
            return web.Response(status=429, text="no room")
        state["in_flight"] += 1
        state["peak"] = max(state["peak"], state["in_flight"])
        try:
            # Hold the slot a little (the injected service time), so a
            # step's requests overlap as on a busy service.
            await asyncio.sleep(0.05)
        finally:
            state["in_flight"] -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        cfg = BurstProbeConfig(name="vpc", kind="burst", url=f"http://127.0.0.1:{port}/",
                               steps=[5, 10, 20], step_timeout="5s", interval="5m",
                               timeout="30s")
        result, _, registry = await run(cfg)
        assert await wait_for(lambda: client_sockets(port) == 0)
    finally:
        await runner.cleanup()
    assert result.ok, result.detail
    assert value(registry, "monitor_burst_capacity_concurrency") == 10
    assert value(registry, "monitor_burst_connections_total", step="20", outcome="failed") == 10
    assert "10 capacity" in result.detail
    assert value(registry, "monitor_burst_connect_duration_seconds_count") == 35


async def test_held_connections_go_slow() -> None:
    """Cap 10 with connections held until a slot frees (hold: None): the excess goes slow."""
    # Each connection keeps its slot >= 600 ms; at step 20 the second ten
    # start only when the first ten finish, so they take >= 1.2 s > 1 s. The
    # first ten have 400 ms of slack below the threshold on a loaded machine.
    faults = Faults(cap=10, hold=None, latency=0.6)
    async with echo_behind_proxy(faults) as proxy:
        result, _, registry = await run(config(proxy.port, steps=[10, 20],
                                               slow_threshold="1s"))
        assert await all_closed(proxy)
    assert value(registry, "monitor_burst_capacity_concurrency") == 10
    assert value(registry, "monitor_burst_connections_total", step="20", outcome="slow") == 10
    assert value(registry, "monitor_burst_connections_total", step="20", outcome="failed") == 0
    assert proxy.rejected == 0 and proxy.peak_active == 10
    assert result.ok, result.detail


async def test_random_resets_fail_connections() -> None:
    """reset_ratio: the proxy's resets come back as failed connections, cause connection_reset."""
    faults = Faults(reset_ratio=0.3, seed=7)
    async with echo_behind_proxy(faults) as proxy:
        result, _, registry = await run(config(proxy.port, steps=[20]))
        assert await all_closed(proxy)
    assert proxy.reset_count > 0
    assert value(registry, "monitor_burst_connections_total", step="20",
                 outcome="failed") == proxy.reset_count
    assert (result.ok, result.reason) == (False, "capacity")
    assert f"{proxy.reset_count} connection_reset" in result.detail


def test_step_timeout_defaults_to_global_timeout() -> None:
    """Without step_timeout a step gets global.timeout, and the run timeout follows from it."""
    text = ("global: {timeout: 4s}\nprobes:\n"
            "  - {name: b, kind: burst, target: '127.0.0.1:7', steps: [5, 10], interval: 1m}\n")
    (probe,) = parse_config(text, {}, kinds=PROBE_KINDS).probes
    assert probe.step_timeout == 4.0
    assert probe.timeout > 2 * probe.step_timeout
