"""Real Prometheus and Alertmanager on 127.0.0.1 for end-to-end tests.

- :func:`prometheus` runs Debian's ``prometheus`` with the repository's
  rules as shipped, scraping and evaluating every 15 s (the reference
  settings of docs/alerting.md) unless told otherwise.
- :func:`alertmanager` runs ``prometheus-alertmanager`` with the shipped
  ``config/prometheus/alertmanager.yml``: same routes, timers and
  inhibitions, only the receivers' URLs point at the test's webhook
  (``alertmanager_test_config``; ``fast=True`` also shortens the grouping
  timers, for tests of routing alone).
- :class:`Webhook` is the receiver: an aiohttp app that queues every
  notification Alertmanager posts, by receiver name.

Every process binds 127.0.0.1 on a free port, keeps its data in a temporary
directory, and is stopped (SIGTERM, then SIGKILL) when its context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_YML = ROOT / "config" / "prometheus" / "alertmanager.yml"
RULE_FILES = sorted((ROOT / "config" / "prometheus" / "rules").glob("*.yml"))
PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
# Scrape and rule evaluation interval: the reference settings.
TICK = "15s"


def missing_binaries() -> str | None:
    """Why the stack cannot run here (with the Debian package to install), or None."""
    if shutil.which(PROMETHEUS_BIN) is None:
        return "needs prometheus (apt-get install prometheus)"
    if shutil.which(ALERTMANAGER_BIN) is None:
        return "needs prometheus-alertmanager (apt-get install prometheus-alertmanager)"
    return None


@dataclass
class Process:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def spawn(name: str, args: list[str], log: Path, url: str,
          env: dict[str, str] | None = None) -> Iterator[Process]:
    """Run ``args`` with output to ``log``; SIGTERM (then SIGKILL) it on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    try:
        yield Process(name, url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def wait_ready(proc: Process, seconds: float = 30.0) -> None:
    """Poll ``/-/ready`` until 200; fail with the process log if it exits or times out."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{proc.url}/-/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{proc.name} not ready after {seconds}s:\n{proc.tail()}")


# -- Prometheus ---------------------------------------------------------------
def prometheus_config(target: str, alertmanager: str, rule_files: list[Path],
                      vantage: str, tick: str = TICK) -> dict[str, Any]:
    """The test scrape config: job "monitor" as in config/prometheus/prometheus.yml."""
    return {
        "global": {"scrape_interval": tick, "evaluation_interval": tick,
                   "scrape_timeout": "10s"},
        "rule_files": [str(p) for p in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{
            "job_name": "monitor",
            "honor_labels": True,
            "static_configs": [{"targets": [target], "labels": {"vantage": vantage}}],
        }],
    }


@contextlib.asynccontextmanager
async def prometheus(tmp: Path, target: str, alertmanager: str,
                     vantage: str) -> AsyncIterator[Process]:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(target, alertmanager, RULE_FILES,
                                                       vantage)))
    port = free_port()
    args = [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with spawn("prometheus", args, tmp / "prometheus.log", f"http://127.0.0.1:{port}") as proc:
        await wait_ready(proc)
        yield proc


async def query(session: aiohttp.ClientSession, prom: Process, expr: str) -> list[dict[str, Any]]:
    """An instant query; the result vector (raises on a query error)."""
    async with session.post(f"{prom.url}/api/v1/query", data={"query": expr}) as response:
        body = await response.json()
    if body.get("status") != "success":
        raise AssertionError(f"query failed: {expr}\n{body}")
    return list(body["data"]["result"])


async def wait_for_query(session: aiohttp.ClientSession, prom: Process, expr: str,
                         seconds: float) -> list[dict[str, Any]]:
    """Poll until ``expr`` returns a non-empty result; bounded by ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = await query(session, prom, expr)
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result for {expr} within {seconds}s")
        await asyncio.sleep(0.25)


# -- Alertmanager -------------------------------------------------------------
def alertmanager_test_config(webhook: str, *, fast: bool = False) -> dict[str, Any]:
    """The shipped alertmanager.yml with the receivers pointed at ``webhook``;
    routes, inhibitions and (unless ``fast``) grouping timers unchanged."""
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    for receiver in config["receivers"]:
        receiver["webhook_configs"] = [
            {"url": f"{webhook}/{receiver['name']}", "send_resolved": True}]
    if fast:
        for route in [config["route"], *config["route"].get("routes", [])]:
            route.update({"group_wait": "0s", "group_interval": "100ms",
                          "repeat_interval": "1h"})
    return dict(config)


@contextlib.asynccontextmanager
async def alertmanager(tmp: Path, webhook: str, *, fast: bool = False
                       ) -> AsyncIterator[Process]:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_test_config(webhook, fast=fast)))
    port = free_port()
    args = [ALERTMANAGER_BIN, f"--config.file={config}", f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: it would bind 0.0.0.0:9094
            "--log.level=warn"]
    with spawn("alertmanager", args, tmp / "alertmanager.log",
                f"http://127.0.0.1:{port}") as proc:
        await wait_ready(proc)
        yield proc


# -- the webhook receiver -----------------------------------------------------
@dataclass
class Notification:
    receiver: str  # from the URL path, as routed by Alertmanager
    received: float  # time.time() when it arrived
    body: dict[str, Any]

    def alerts(self, alertname: str, status: str) -> list[dict[str, Any]]:
        return [a for a in self.body.get("alerts", [])
                if a["labels"].get("alertname") == alertname and a["status"] == status]


@dataclass
class Webhook:
    url: str = ""
    notifications: list[Notification] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, alertname: str, status: str, seconds: float,
                       ) -> tuple[Notification, dict[str, Any]]:
        """The first notification with ``alertname`` in ``status``; bounded."""
        deadline = time.monotonic() + seconds
        seen = 0
        while True:
            for note in self.notifications[seen:]:
                found = note.alerts(alertname, status)
                if found:
                    return note, found[0]
            seen = len(self.notifications)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = [(n.receiver, a["labels"].get("alertname"), a["status"])
                         for n in self.notifications for a in n.body.get("alerts", [])]
                raise TimeoutError(f"no {status} {alertname} within {seconds}s; got {names}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


@contextlib.asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()

    async def receive(request: web.Request) -> web.Response:
        hook.notifications.append(Notification(request.match_info["receiver"], time.time(),
                                               await request.json()))
        hook.arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{receiver}", receive)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield hook
    finally:
        await runner.cleanup()
