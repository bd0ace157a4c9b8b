"""The daemon: config -> probes -> scheduler -> recorder, and reloads.

One asyncio event loop does all probing. A reload keeps the running config
when the new file is bad, reschedules changed probes and drops every series
of removed or changed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from monitor import __version__, attribution
from monitor.config import Config, ConfigError, ConfigSource, ProbeConfig
from monitor.config.common import TLSOptions
from monitor.config.journey import JourneyProbeConfig
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.metricspecs import (
    ATTRIBUTION_DROPPED,
    CONFIG_RELOAD_SUCCESS,
    CONFIG_RELOAD_TIMESTAMP,
    EVENT_LOOP_LAG,
    SCHEDULER_LAG,
)
from monitor.net.tlsctx import client_context as ssl_context
from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Probe, ProbeFailure
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
        source: ConfigSource | Path,
        config: Config,
        *,
        metrics: Metrics,
        redactor: Redactor,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.source = ConfigSource.of(source, kinds=PROBE_KINDS)  # what a reload reads again
        self.config = config
        self.metrics = metrics
        self.redactor = redactor
        self.shard = shard
        self.recorder = Recorder(metrics, verdict_window=config.global_.verdict_window,
                                 redact=redactor.text)
        self.scheduler = Scheduler(
            self._run, on_skipped=self.recorder.skipped,
            on_lag=metrics.child(SCHEDULER_LAG).observe,
        )
        self.probes: dict[str, tuple[ProbeConfig, Probe[Any]]] = {}
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.ready = False
        self._lag_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self.attributor: attribution.Attributor | None = None

    @property
    def config_path(self) -> Path | None:
        """The config file, when the source is one."""
        return self.source.path

    # -- life cycle -------------------------------------------------------
    async def start(self) -> None:
        plan = await self._plan(self.config, changed_only=False)
        await self._commit(plan)
        self._loaded(success=True)
        self.scheduler.start()
        self._lag_task = asyncio.create_task(self._measure_loop_lag())
        self._attribution(self.config)
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
        if self.attributor is not None:
            await self.attributor.stop()
        log.info("daemon stopped")

    # -- reload -----------------------------------------------------------
    async def reload(self) -> list[str]:
        """Load the config source again; return its problems ([] on success).

        All or nothing: the new config is loaded and every new or changed
        probe, its schedule and its TLS contexts are built before anything of
        the running config is touched. Any failure keeps the running config
        whole and sets ``monitor_config_last_reload_success`` to 0.
        """
        async with self._reload_lock:
            try:
                config = self.source.load()
                if config.server != self.config.server:
                    # The running server keeps its settings (users, TLS, address)
                    # until restart; the daemon's view of them must not change.
                    log.warning("server settings changed: they take effect on restart")
                    config = config.model_copy(update={"server": self.config.server})
                plan = await self._plan(config, changed_only=True)
            except ConfigError as error:
                return self._failed(error.problems)
            except Exception as exc:  # a bug of ours: the running config stays whole
                log.exception("config reload raised")
                return self._failed([f"reload failed (internal error, please report it): "
                                     f"{type(exc).__name__}: {exc}"])
            old = self.config.attribution
            await self._commit(plan)
            if config.attribution != old:
                if self.attributor is not None:
                    await self.attributor.stop()  # queued lookups of the old config go
                    self.attributor = None
                self._attribution(config)
            self._loaded(success=True)
            log.info("config reloaded", probes=len(self.probes))
            return []

    def _failed(self, problems: list[str]) -> list[str]:
        self._loaded(success=False)
        log.error("config reload failed, keeping the running config", problems=problems)
        return problems

    async def _plan(self, config: Config, *, changed_only: bool) -> _Plan:
        """Build what ``config`` needs (probes, schedules, TLS) without
        touching anything that runs; raise ConfigError naming what failed."""
        old = {name: cfg for name, (cfg, _) in self.probes.items()} if changed_only else {}
        if _schedule_settings(config) != _schedule_settings(self.config):
            old = {}  # jitter or the verdict window changed: every probe starts anew
        new = {p.name: p for p in self._selected(config)}
        plan = _Plan(config, remove=[n for n in self.probes if new.get(n) != old.get(n)])
        problems: list[str] = []
        for name, probe_config in new.items():
            if old.get(name) == probe_config:
                continue
            try:
                _build_tls(probe_config)
                trigger = self.scheduler.trigger(name, probe_config.interval,
                                                 config.global_.jitter)
                probe = build_probe(probe_config)
            except Exception as exc:  # every failure is a problem of this probe
                problems.append(f"probe {name!r}: cannot be built: {_describe(exc)}")
                continue
            plan.add.append((probe_config, probe, trigger))
        if problems:
            for _, probe, _ in plan.add:  # built for nothing: release them
                await _close(probe)
            raise ConfigError(problems)
        return plan

    async def _commit(self, plan: _Plan) -> None:
        """Swap the plan in. Nothing here can fail on what the config says."""
        for name in plan.remove:
            await self._remove(name)
        config = plan.config
        self.config = config
        self.recorder.verdict_window = config.global_.verdict_window
        self.redactor.update(config.secrets)
        if isinstance(self.metrics.registry, ConstLabelRegistry):  # (a test may pass a plain one)
            self.metrics.registry.const_labels = dict(config.global_.labels)
        for probe_config, probe, trigger in plan.add:
            self.probes[probe_config.name] = (probe_config, probe)
            self.recorder.register(probe_config, probe.registration_samples())
            self.scheduler.add(probe_config.name, probe_config.interval,
                               config.global_.jitter, trigger=trigger)
        if config.attribution is not None:  # (also for probes that stay)
            for name, (probe_config, _) in self.probes.items():
                for sample in attribution.zero_series(probe_config.kind):
                    self.recorder.live(name, sample)

    async def _remove(self, name: str) -> None:
        self.scheduler.remove(name)
        task = self.running.pop(name, None)
        if task is not None:  # a load test stops at once
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        _, probe = self.probes.pop(name)
        await _close(probe)
        self.recorder.forget(name)

    def _selected(self, config: Config) -> list[ProbeConfig]:
        if self.shard is None:
            return list(config.probes)
        return list(select(config.probes, *self.shard))

    def _attribution(self, config: Config) -> None:
        """Start looking failed runs up, when ``config`` asks for it."""
        if config.attribution is None:
            return
        metrics = self.metrics
        self.attributor = attribution.Attributor(
            config.attribution, attributed=self.recorder.attributed,
            dropped=lambda cause: metrics.child(ATTRIBUTION_DROPPED, cause=cause).inc())
        for cause in attribution.DROPPED:
            metrics.child(ATTRIBUTION_DROPPED, cause=cause)
        self.attributor.start()

    def _loaded(self, *, success: bool) -> None:
        self.metrics.child(CONFIG_RELOAD_SUCCESS).set(1 if success else 0)
        if success:
            self.metrics.child(CONFIG_RELOAD_TIMESTAMP).set(time.time())

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
            result = await run_once(probe, redactor=self.redactor,
                                    on_result=self.recorder.record, live=self.recorder.live)
            if self.attributor is not None:  # queued only: the lookup runs in its own task
                self.attributor.submit(result)
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
        histogram = self.metrics.child(EVENT_LOOP_LAG)
        while True:
            started = loop.time()
            await asyncio.sleep(LOOP_LAG_TICK)
            histogram.observe(max(0.0, loop.time() - started - LOOP_LAG_TICK))


@dataclass
class _Plan:
    """A config ready to swap in: probes to remove, built probes to add."""

    config: Config
    remove: list[str]
    add: list[tuple[ProbeConfig, Probe[Any], Any]] = field(default_factory=list)


def _build_tls(probe_config: ProbeConfig) -> None:
    """Build the probe's client TLS contexts now (they are cached for its runs):
    a CA file that went bad since validation fails the reload, not every run."""
    options = [getattr(probe_config, "tls", None)]
    if isinstance(probe_config, JourneyProbeConfig):  # (a burst's steps are numbers)
        options += [getattr(step.action, "tls", None) for step in probe_config.steps]
    for tls in options:
        if isinstance(tls, TLSOptions):
            ssl_context(tls)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProbeFailure):
        return exc.detail
    return f"{type(exc).__name__}: {exc}"


async def _close(probe: Probe[Any]) -> None:
    with contextlib.suppress(Exception):
        await probe.close()


def _schedule_settings(config: Config) -> tuple[float, float]:
    """Global settings that shape every probe's job and ring."""
    return config.global_.jitter, config.global_.verdict_window
