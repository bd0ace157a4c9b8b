"""One job per probe on asyncio timers: jittered, never two runs of one probe at once.

A run that cannot start because the previous one still runs, or that comes
up later than its grace time (the event loop was blocked), is counted in
`monitor_probe_skipped_total`: nothing is lost silently. After a stall a
probe runs once, never a burst of catch-up runs.

Runs sit on a fixed grid per probe (``start + k * interval``), each moved
by a random delay in ``[0, jitter * interval)``; the delay never carries
over to the next run, so a probe runs exactly once per interval on average.

After a failed run the daemon brings the next run forward (``confirm``): to
half an interval after the failed run started, never before it ended. A
failure is then confirmed or cleared within half an interval instead of a
whole one, which is what lets a full outage page within a minute while a
single failed run never pages (docs/alerting.md). Both runs are recorded:
this is not a retry, nothing is hidden.

Why not APScheduler (which this module used before): its per-run
bookkeeping (job store updates, events, datetime arithmetic, an executor
wrapper) was 17 % of the daemon's CPU at 500 http runs/s on this
repository's machine (py-spy, bench/daemon.py): more than recording a run.
What the daemon needs is one timer per due time and a heap.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

log = structlog.get_logger("monitor.scheduler")

# The least delay of a confirmation run after the failed run returned.
CONFIRM_MIN_DELAY = 0.01
TIMER_SLACK = 0.001
# Due runs started per timer callback before the loop gets its turn back.
BATCH = 64


def first_run_offset(name: str, interval: float) -> float:
    """Spread first runs over the first interval, the same way on every start."""
    digest = hashlib.sha256(name.encode()).digest()
    return interval * int.from_bytes(digest[:4], "big") / 2**32


@dataclass
class Schedule:
    """One probe's grid: runs at ``start + k * interval`` plus a jitter each."""

    interval: float
    jitter: float  # seconds
    start: float  # wall-clock seconds
    grace: float
    k: int = 0  # index of the next grid point
    due: float = 0.0  # the next run, wall-clock seconds (grid point + jitter)
    generation: int = 0  # bumped when `due` changes: older heap entries are stale
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def advance(self, now: float) -> None:
        """Move to the first grid point after ``now`` (coalescing missed ones)."""
        self.k = max(self.k + 1, math.floor((now - self.start) / self.interval) + 1)
        self._set_due()

    def _set_due(self) -> None:
        self.due = self.start + self.k * self.interval + random.uniform(0, self.jitter)
        self.generation += 1


class Scheduler:
    """Runs ``run(name)`` for each added probe on its interval."""

    def __init__(
        self,
        run: Callable[[str], Awaitable[None]],
        *,
        on_skipped: Callable[[str], None],
        on_lag: Callable[[float], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._run = run
        self._on_skipped = on_skipped
        self._on_lag = on_lag
        self._clock = clock
        self._jobs: dict[str, Schedule] = {}
        self._heap: list[tuple[float, int, int, str]] = []  # (due, seq, generation, name)
        self._seq = itertools.count()
        self._timer: asyncio.Handle | None = None
        self._timer_at = math.inf
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._arm()

    def shutdown(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def trigger(self, name: str, interval: float, jitter: float, *, spread: bool = True
                ) -> Schedule:
        """The schedule of one probe, built (and its first run computed) without
        adding it: a reload builds every schedule before it changes anything."""
        if not (interval > 0 and math.isfinite(interval)) or not 0 <= jitter <= 1:
            raise ValueError(f"interval {interval!r} and jitter {jitter!r} make no schedule")
        offset = first_run_offset(name, interval) if spread else 0.0
        schedule = Schedule(interval=interval, jitter=jitter * interval,
                            start=self._clock() + offset,
                            grace=max(1.0, float(int(interval / 2))))
        schedule._set_due()
        return schedule

    def add(self, name: str, interval: float, jitter: float, *, spread: bool = True,
            trigger: Schedule | None = None) -> None:
        schedule = trigger or self.trigger(name, interval, jitter, spread=spread)
        old = self._jobs.get(name)
        if old is not None:
            schedule.task = old.task  # a run still going keeps counting as running
        self._jobs[name] = schedule
        self._push(name, schedule)

    def confirm(self, name: str, started: datetime, interval: float) -> None:
        """Bring the next run of ``name`` forward to ``started + interval / 2``
        (the failed run has ended: call this as it returns)."""
        schedule = self._jobs.get(name)
        if schedule is None:
            return
        # Not at once: the failed run still counts as running until its task
        # is done, and a run due now would be skipped for overlap.
        at = max(started.timestamp() + interval / 2, self._clock() + CONFIRM_MIN_DELAY)
        if at < schedule.due:
            schedule.due = at
            schedule.generation += 1
            # The grid goes on from its first point after the confirmation run.
            schedule.k = math.floor((at - schedule.start) / schedule.interval)
            self._push(name, schedule)

    def next_run_time(self, name: str) -> datetime | None:
        schedule = self._jobs.get(name)
        return None if schedule is None else datetime.fromtimestamp(schedule.due, UTC)

    def remove(self, name: str) -> None:
        self._jobs.pop(name, None)  # its heap entries are skipped when they come up

    def job_names(self) -> list[str]:
        return list(self._jobs)

    # -- the timer --------------------------------------------------------
    def _push(self, name: str, schedule: Schedule) -> None:
        heapq.heappush(self._heap, (schedule.due, next(self._seq), schedule.generation, name))
        if self._running and schedule.due < self._timer_at:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf
        if not self._running or not self._heap or self._loop is None:
            return
        due = self._heap[0][0]
        self._timer_at = due
        delay = max(0.0, due - self._clock())
        self._timer = self._loop.call_at(self._loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._clock()
        heap = self._heap
        started = 0
        # A timer may wake a little before the wall clock says due (two clocks).
        while heap and heap[0][0] <= now + TIMER_SLACK and started < BATCH:
            due, _, generation, name = heapq.heappop(heap)
            schedule = self._jobs.get(name)
            if schedule is None or schedule.generation != generation:
                continue  # removed, replaced or moved
            lateness = now - due
            schedule.advance(now)
            heapq.heappush(heap, (schedule.due, next(self._seq), schedule.generation, name))
            if schedule.task is not None and not schedule.task.done():
                self._skipped(name, "previous run still running")
            elif lateness > schedule.grace:
                self._skipped(name, "missed its start time")
            else:
                self._on_lag(max(0.0, lateness))
                schedule.task = asyncio.ensure_future(self._guarded(name))
                started += 1
        if started >= BATCH and self._loop is not None:  # more are due: after the loop's turn
            self._timer = self._loop.call_soon(self._fire)
            self._timer_at = now
            return
        self._arm()

    def _skipped(self, name: str, why: str) -> None:
        log.warning("probe run skipped", probe=name, why=why)
        self._on_skipped(name)

    async def _guarded(self, name: str) -> None:
        if name not in self._jobs:
            return  # removed between its timer and the task's first step: no run
        try:
            await self._run(name)
        except asyncio.CancelledError:
            raise
        except Exception:  # the daemon's run never raises; if it did, say so and go on
            log.exception("probe run raised", probe=name)
