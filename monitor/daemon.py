"""The daemon: config -> probes -> scheduler -> recorder, and reloads.

One asyncio event loop does all probing. A reload keeps the running config
when the new file is bad, reschedules changed probes and drops every series
of removed or changed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from monitor import __version__
from monitor.config import Config, ConfigError, load_config
from monitor.metrics import Metrics
from monitor.probes import build_probe
from monitor.probes.base import Probe
from monitor.recorder import Recorder
from monitor.redact import Redactor
from monitor.runner import run_once
from monitor.scheduler import Scheduler
from monitor.sharding import select

log = structlog.get_logger("monitor.daemon")

# How often the event-loop lag is sampled.
LOOP_LAG_TICK = 0.5
# Kinds whose next run never comes early after a failure: capacity tests
# have interval floors so that they cannot become the outage they look for.
NO_CONFIRMATION = frozenset({"burst", "load"})


class Daemon:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        *,
        metrics: Metrics,
        redactor: Redactor,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.metrics = metrics
        self.redactor = redactor
        self.shard = shard
        self.recorder = Recorder(metrics, verdict_window=config.global_.verdict_window,
                                 redact=redactor.text)
        self.scheduler = Scheduler(
            self._run, on_skipped=self.recorder.skipped,
            on_lag=metrics["monitor_scheduler_lag_seconds"].observe,
        )
        self.probes: dict[str, tuple[Any, Probe]] = {}
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.ready = False
        self._lag_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()

    # -- life cycle -------------------------------------------------------
    async def start(self) -> None:
        self._apply(self.config)
        self._loaded(success=True)
        self.scheduler.start()
        self._lag_task = asyncio.create_task(self._measure_loop_lag())
        self.ready = True
        log.info("daemon started", probes=len(self.probes), version=__version__)

    async def stop(self) -> None:
        self.ready = False
        self.scheduler.shutdown()
        if self._lag_task:
            self._lag_task.cancel()
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, probe in self.probes.values():
            await _close(probe)
        log.info("daemon stopped")

    # -- reload -----------------------------------------------------------
    async def reload(self) -> list[str]:
        """Load the config file again; return its problems ([] on success)."""
        async with self._reload_lock:
            try:
                config = load_config(self.config_path)
            except ConfigError as error:
                self._loaded(success=False)
                log.error("config reload failed, keeping the running config",
                          problems=error.problems)
                return error.problems
            if config.server != self.config.server:
                # The running server keeps its settings (users, TLS, address)
                # until restart; the daemon's view of them must not change.
                log.warning("server settings changed: they take effect on restart")
                config = config.model_copy(update={"server": self.config.server})
            await self._replace(config)
            self._loaded(success=True)
            log.info("config reloaded", probes=len(self.probes))
            return []

    async def _replace(self, config: Config) -> None:
        old = {name: cfg for name, (cfg, _) in self.probes.items()}
        if _schedule_settings(config) != _schedule_settings(self.config):
            old = {}  # jitter or the verdict window changed: every probe starts anew
        new = {p.name: p for p in self._selected(config)}
        for name in list(self.probes):
            if new.get(name) != old.get(name):
                await self._remove(name)
        self.config = config
        self.recorder.verdict_window = config.global_.verdict_window
        self._apply(config, only={n for n, c in new.items() if old.get(n) != c})

    def _apply(self, config: Config, only: set[str] | None = None) -> None:
        self.redactor.update(config.secrets)
        selected = self._selected(config)
        if self.metrics.rebucket_sql_connect(p.app_timeout for p in selected if p.kind == "sql"):
            # The new histogram starts empty: give the sql probes that stay
            # their zero series back.
            for name, (probe_config, probe) in self.probes.items():
                if probe_config.kind == "sql":
                    for sample in probe.registration_samples():
                        if sample.metric == "monitor_sql_connect_duration_seconds":
                            self.recorder.live(name, sample)
        self.metrics.registry.const_labels = dict(config.global_.labels)  # type: ignore[attr-defined]
        for probe_config in selected:
            if only is not None and probe_config.name not in only:
                continue
            probe = build_probe(probe_config)
            self.probes[probe_config.name] = (probe_config, probe)
            self.recorder.register(probe_config, probe.registration_samples())
            self.scheduler.add(probe_config.name, probe_config.interval,
                               config.global_.jitter)

    async def _remove(self, name: str) -> None:
        self.scheduler.remove(name)
        task = self.running.pop(name, None)
        if task is not None:  # a load test stops at once
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        _, probe = self.probes.pop(name)
        await _close(probe)
        self.recorder.forget(name)

    def _selected(self, config: Config) -> list[Any]:
        if self.shard is None:
            return list(config.probes)
        return list(select(config.probes, *self.shard))

    def _loaded(self, *, success: bool) -> None:
        self.metrics["monitor_config_last_reload_success"].set(1 if success else 0)
        if success:
            self.metrics["monitor_config_last_reload_timestamp_seconds"].set(time.time())

    # -- runs -------------------------------------------------------------
    async def _run(self, name: str) -> None:
        entry = self.probes.get(name)
        if entry is None:
            return
        config, probe = entry
        task = asyncio.current_task()
        assert task is not None
        self.running[name] = task
        try:
            result = await run_once(probe, config, redactor=self.redactor,
                                    on_result=self.recorder.record, live=self.recorder.live)
            if not result.ok and config.kind not in NO_CONFIRMATION:
                started = datetime.fromtimestamp(result.started_at, UTC)
                self.scheduler.confirm(name, started, config.interval)
        except asyncio.CancelledError:
            # Removed on reload, or stopping: the run ends here, and the
            # scheduler must not report it as a job that raised.
            log.info("probe run cancelled", probe=name)
        finally:
            if self.running.get(name) is task:
                del self.running[name]

    async def _measure_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        histogram = self.metrics["monitor_event_loop_lag_seconds"]
        while True:
            started = loop.time()
            await asyncio.sleep(LOOP_LAG_TICK)
            histogram.observe(max(0.0, loop.time() - started - LOOP_LAG_TICK))


async def _close(probe: Probe) -> None:
    with contextlib.suppress(Exception):
        await probe.close()


def _schedule_settings(config: Config) -> tuple[float, float]:
    """Global settings that shape every probe's job and ring."""
    return config.global_.jitter, config.global_.verdict_window
