"""The shipped Alertmanager routes and inhibitions, in a real Alertmanager.

amtool can test routes but not inhibitions: here alerts with the labels the
rules give are posted to a running Alertmanager (the shipped config, with
the receivers pointed at a webhook in the test), which then says which are
inhibited and delivers the rest to the right receiver.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.promstack import alertmanager, missing_binaries, webhook

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.external,
    pytest.mark.skipif(missing_binaries() is not None, reason=missing_binaries() or ""),
]


def alert(name: str, severity: str, family: str, vantage: str, probe: str = "") -> dict[str, Any]:
    labels = {"alertname": name, "severity": severity, "family": family, "vantage": vantage,
              "job": "monitor"}
    if probe:
        labels["probe"] = probe
    now = datetime.now(UTC)
    return {"labels": labels, "annotations": {"summary": name},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}


ALERTS = {
    # vantage v1: the daemon is down; everything else of v1 is inhibited
    "down": alert("MonitorDaemonDown", "page", "daemon", "v1"),
    "v1-page": alert("MonitorHTTPErrorRatioHigh", "page", "http_errors", "v1", "api"),
    "v1-stale": alert("MonitorProbesStale", "page", "stale", "v1", "api"),
    # vantage v2: a page inhibits the tickets of its probe only
    "v2-page": alert("MonitorHTTPErrorRatioHigh", "page", "http_errors", "v2", "api"),
    "v2-ticket": alert("MonitorHTTPErrorRatioElevated", "ticket", "http_errors", "v2", "api"),
    "v2-degraded": alert("MonitorProbeDegraded", "ticket", "probe_failures", "v2", "api"),
    "v2-other-ticket": alert("MonitorHTTPErrorRatioElevated", "ticket", "http_errors", "v2",
                             "auth"),
    "v2-cert": alert("MonitorTLSCertExpiringSoon", "ticket", "tls_expiry", "v2", "cert"),
    # a stale probe inhibits its own alerts, not its vantage's
    "v2-stale": alert("MonitorProbesStale", "page", "stale", "v2", "stuck"),
    "v2-stuck-page": alert("MonitorProbeDown", "page", "probe_failures", "v2", "stuck"),
    "v2-other-page": alert("MonitorProbeDown", "page", "probe_failures", "v2", "gp"),
}
INHIBITED = {"v1-page", "v1-stale", "v2-ticket", "v2-degraded", "v2-stuck-page"}
# The alerts that inhibit others: posted first, so that none of their targets
# can be notified in the moment before the inhibition exists (as in real life,
# where the source alert fires first and the targets follow).
SOURCES = ("down", "v2-page", "v2-stale")


def key(labels: dict[str, str]) -> str:
    return next(k for k, a in ALERTS.items() if a["labels"] == labels)


async def test_inhibitions_and_routes_of_the_shipped_config(tmp_path: Path) -> None:
    """Daemon down silences its vantage; a page its probe's ticket; pages reach the pager."""
    async with webhook() as hook, alertmanager(tmp_path, hook.url, fast=True) as am, \
            aiohttp.ClientSession() as session:
        async with session.post(f"{am.url}/api/v2/alerts",
                                json=[ALERTS[k] for k in SOURCES]) as r:
            assert r.status == 200, await r.text()
        for _ in range(100):  # bounded: 10 s
            async with session.get(f"{am.url}/api/v2/alerts") as r:
                if len(await r.json()) == len(SOURCES):
                    break
            await asyncio.sleep(0.1)
        rest = [a for k, a in ALERTS.items() if k not in SOURCES]
        async with session.post(f"{am.url}/api/v2/alerts", json=rest) as r:
            assert r.status == 200, await r.text()
        deadline = time.monotonic() + 20
        while True:
            async with session.get(f"{am.url}/api/v2/alerts") as r:
                state = {key(a["labels"]): a["status"] for a in await r.json()}
            inhibited = {k for k, s in state.items() if s["inhibitedBy"]}
            delivered = {key(a["labels"]): n.receiver
                         for n in hook.notifications for a in n.body["alerts"]}
            if len(state) == len(ALERTS) and inhibited == INHIBITED and \
                    set(delivered) == set(ALERTS) - INHIBITED:
                break
            assert time.monotonic() < deadline, (inhibited, delivered)
            await asyncio.sleep(0.1)
    for name, receiver in delivered.items():
        severity = ALERTS[name]["labels"]["severity"]
        assert receiver == ("pager" if severity == "page" else "tickets"), name
