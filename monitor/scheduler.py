"""APScheduler jobs: one per probe, jittered, never two runs of one probe at once.

A run that cannot start because the previous one still runs, or that the
scheduler missed (the event loop was blocked past the grace time), is
counted in `monitor_probe_skipped_total`: nothing is lost silently.

After a failed run the daemon brings the next run forward (``confirm``): to
half an interval after the failed run started, never before it ended. A
failure is then confirmed or cleared within half an interval instead of a
whole one, which is what lets a full outage page within a minute while a
single failed run never pages (docs/alerting.md). Both runs are recorded:
this is not a retry, nothing is hidden.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = structlog.get_logger("monitor.scheduler")

# The least delay of a confirmation run after the failed run returned.
CONFIRM_MIN_DELAY = 0.01


def first_run_offset(name: str, interval: float) -> float:
    """Spread first runs over the first interval, the same way on every start."""
    digest = hashlib.sha256(name.encode()).digest()
    return interval * int.from_bytes(digest[:4], "big") / 2**32


class Scheduler:
    """Runs ``run(name)`` for each added probe on its interval."""

    def __init__(
        self,
        run: Callable[[str], Awaitable[None]],
        *,
        on_skipped: Callable[[str], None],
        on_lag: Callable[[float], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._run = run
        self._on_skipped = on_skipped
        self._on_lag = on_lag
        self._clock = clock
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(
            self._event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_SUBMITTED
        )

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def trigger(self, name: str, interval: float, jitter: float, *, spread: bool = True
                ) -> IntervalTrigger:
        """The schedule of one probe, built (and its first run computed) without
        adding it: a reload builds every schedule before it changes anything."""
        offset = first_run_offset(name, interval) if spread else 0.0
        trigger = IntervalTrigger(
            seconds=interval,
            start_date=self._clock() + timedelta(seconds=offset),
            jitter=jitter * interval or None,
            timezone=UTC,
        )
        trigger.get_next_fire_time(None, self._clock())  # raises here, not in add_job
        return trigger

    def add(self, name: str, interval: float, jitter: float, *, spread: bool = True,
            trigger: IntervalTrigger | None = None) -> None:
        if trigger is None:
            trigger = self.trigger(name, interval, jitter, spread=spread)
        self._scheduler.add_job(
            self._run, trigger, args=(name,), id=name, name=name,
            max_instances=1,  # never two runs of one probe at once
            coalesce=True,  # after a stall, run once rather than catch up in a burst
            misfire_grace_time=max(1, int(interval / 2)),
            replace_existing=True,
        )

    def confirm(self, name: str, started: datetime, interval: float) -> None:
        """Bring the next run of ``name`` forward to ``started + interval / 2``
        (the failed run has ended: call this as it returns)."""
        job = self._scheduler.get_job(name)
        if job is None or job.next_run_time is None:
            return
        # Not at once: the failed run still counts as running until its task
        # is done, and a run due now would be skipped for overlap.
        at = max(started + timedelta(seconds=interval / 2),
                 self._clock() + timedelta(seconds=CONFIRM_MIN_DELAY))
        if at < job.next_run_time:
            job.modify(next_run_time=at)

    def remove(self, name: str) -> None:
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def job_names(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    def _event(self, event: Any) -> None:
        if event.code == EVENT_JOB_SUBMITTED:
            submitted: JobSubmissionEvent = event
            now = self._clock()
            for scheduled in submitted.scheduled_run_times:
                self._on_lag(max(0.0, (now - scheduled).total_seconds()))
            return
        skipped: JobEvent = event
        log.warning(
            "probe run skipped",
            probe=skipped.job_id,
            why="previous run still running" if event.code == EVENT_JOB_MAX_INSTANCES
            else "missed its start time",
        )
        self._on_skipped(skipped.job_id)
