"""monitor/scheduler.py: one job per probe, never overlapping, skips counted."""

from __future__ import annotations

import asyncio

from monitor.scheduler import Scheduler, first_run_offset


def test_first_runs_spread_over_the_interval_and_are_stable() -> None:
    """Offsets lie in [0, interval) and do not change between starts."""
    offsets = [first_run_offset(f"probe-{i}", 30.0) for i in range(200)]
    assert all(0 <= o < 30 for o in offsets)
    assert offsets == [first_run_offset(f"probe-{i}", 30.0) for i in range(200)]
    # spread, not clumped: every third of the interval gets some
    assert {int(o // 10) for o in offsets} == {0, 1, 2}


async def test_overlapping_run_is_skipped_and_counted() -> None:
    """While a run is still going, the next due run is skipped and reported, not queued."""
    started: list[str] = []
    skipped: list[str] = []
    lags: list[float] = []
    release = asyncio.Event()
    two_skips = asyncio.Event()

    async def run(name: str) -> None:
        started.append(name)
        await release.wait()  # the run outlives its interval

    def on_skipped(name: str) -> None:
        skipped.append(name)
        if len(skipped) >= 2:
            two_skips.set()

    scheduler = Scheduler(run, on_skipped=on_skipped, on_lag=lags.append)
    scheduler.add("slow", interval=0.1, jitter=0.0, spread=False)
    scheduler.start()
    try:
        await asyncio.wait_for(two_skips.wait(), timeout=10)
    finally:
        release.set()
        scheduler.shutdown()
    assert started == ["slow"]  # never a second concurrent run
    assert set(skipped) == {"slow"}
    assert lags and all(lag >= 0 for lag in lags)


async def test_remove_stops_future_runs() -> None:
    """A removed job is no longer listed (its probe was removed on reload)."""
    async def run(name: str) -> None:
        return None

    scheduler = Scheduler(run, on_skipped=lambda _: None, on_lag=lambda _: None)
    scheduler.start()
    scheduler.add("a", interval=60, jitter=0.1)
    scheduler.add("b", interval=60, jitter=0.1)
    scheduler.remove("a")
    assert scheduler.job_names() == ["b"]
    scheduler.shutdown()
