"""monitor/scheduler.py: one job per probe, never overlapping, skips counted."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

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


async def test_jitter_does_not_slow_the_rate_and_removed_jobs_stop() -> None:
    """With jitter 1.0 a 50 ms job runs once per grid point (about 20 times in a
    second, where a delay carried over to the next run would give about 13);
    after remove() it runs no more."""
    starts: list[float] = []

    async def run(name: str) -> None:
        starts.append(time.time())

    scheduler = Scheduler(run, on_skipped=lambda _: None, on_lag=lambda _: None)
    scheduler.start()
    began = time.time()
    scheduler.add("j", interval=0.05, jitter=1.0, spread=False)
    await asyncio.sleep(1.0)
    scheduler.remove("j")
    count = len(starts)
    await asyncio.sleep(0.2)
    scheduler.shutdown()
    assert 17 <= count <= 21, count
    assert len(starts) == count
    assert all(t >= began for t in starts)


async def test_confirm_brings_the_next_run_forward_only() -> None:
    """confirm() moves the next run earlier, never later."""
    scheduler = Scheduler(lambda _: asyncio.sleep(0), on_skipped=lambda _: None,
                          on_lag=lambda _: None)
    scheduler.start()
    name = next(f"c-{i}" for i in range(1000) if first_run_offset(f"c-{i}", 60) > 45)
    scheduler.add(name, interval=60, jitter=0.0)
    now = datetime.now(UTC)
    scheduler.confirm(name, now, 60)
    moved = scheduler.next_run_time(name)
    assert moved is not None and abs((moved - now).total_seconds() - 30) < 0.5
    scheduler.confirm(name, now + timedelta(seconds=40), 60)  # would be later: ignored
    assert scheduler.next_run_time(name) == moved
    scheduler.shutdown()
