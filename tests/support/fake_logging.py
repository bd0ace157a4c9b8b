"""A fake Cloud Logging API on 127.0.0.1.

What it speaks, and where the wire format comes from:

- ``POST /v2/entries:list`` (Cloud Logging API reference, "Method:
  entries.list", https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list):
  a JSON body with ``resourceNames``, ``filter``, ``orderBy``, ``pageSize``,
  ``pageToken``; the answer ``{"entries": [...], "nextPageToken": "..."}``
  (no token on the last page). Entries are LogEntry objects (reference
  "LogEntry", .../rest/v2/LogEntry, with ``httpRequest`` as in "HttpRequest",
  .../rest/v2/LogEntry#HttpRequest).
- Errors as Google APIs send them (API design guide, "Errors",
  https://cloud.google.com/apis/design/errors): ``{"error": {"code": 403,
  "message": "...", "status": "PERMISSION_DENIED"}}``.
- Credentials: a ``Bearer`` token, which must be one the fake metadata
  server of tests/support/metadata.py handed out when ``valid_tokens`` is
  given (401 UNAUTHENTICATED otherwise, as the real API answers).

Filtering: the fake understands the comparisons monitor's filter uses
(``trace="..."``, ``resource.type="..."`` joined by OR, ``timestamp>=`` and
``timestamp<=``) and refuses a filter without a ``trace`` restriction with
400 INVALID_ARGUMENT, so a test sees which trace was asked for.

Example entries (:func:`lb_entry`, :func:`run_entry`) follow the documented
samples: the external Application Load Balancer's request log (docs
"External Application Load Balancer logging and monitoring",
https://cloud.google.com/load-balancing/docs/https/https-logging-monitoring:
``jsonPayload.@type`` LoadBalancerLogEntry, ``statusDetails``, resource type
``http_load_balancer``, log ``requests``) and Cloud Run's request log (docs
"Logging and viewing logs", https://cloud.google.com/run/docs/logging, log
``run.googleapis.com/requests``, resource type ``cloud_run_revision``; the
"no available instance" and request-timeout texts from "Troubleshoot Cloud
Run issues", https://cloud.google.com/run/docs/troubleshooting).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.support.metadata import FakeMetadata, fake_metadata, point_google_auth_at

TROUBLESHOOTING = "https://cloud.google.com/run/docs/troubleshooting"
NO_INSTANCE = ("The request was aborted because there was no available instance. "
               f"Additional troubleshooting documentation can be found at: "
               f"{TROUBLESHOOTING}#abort-request")
REQUEST_TIMEOUT = ("The request has been terminated because it has reached the maximum "
                   f"request timeout. To change this limit, see {TROUBLESHOOTING}#timeout")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lb_entry(project: str, trace_id: str, status: int, details: str,
             *, url: str = "https://staging.example.com/health") -> dict[str, Any]:
    """A load balancer request entry as in the documented sample."""
    return {
        "insertId": f"lb-{trace_id[:8]}-{details[:8]}",
        "jsonPayload": {
            "@type": "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry",
            "statusDetails": details,
            "backendTargetProjectNumber": "projects/123456789012",
            "remoteIp": "203.0.113.7",
        },
        "httpRequest": {"requestMethod": "GET", "requestUrl": url, "status": status,
                        "userAgent": "monitor/0.1.0", "remoteIp": "203.0.113.7",
                        "latency": "0.004s"},
        "resource": {"type": "http_load_balancer", "labels": {
            "project_id": project, "zone": "global", "url_map_name": "web-map",
            "forwarding_rule_name": "web-https", "target_proxy_name": "web-proxy",
            "backend_service_name": "backend"}},
        "timestamp": _now(), "receiveTimestamp": _now(), "severity": "WARNING"
        if status >= 400 else "INFO",
        "logName": f"projects/{project}/logs/requests",
        "trace": f"projects/{project}/traces/{trace_id}",
        "spanId": "000000000000004a",
    }


def run_entry(project: str, trace_id: str, status: int, text: str | None = None,
              ) -> dict[str, Any]:
    """A Cloud Run request entry (with Cloud Run's own message when it answered)."""
    entry: dict[str, Any] = {
        "insertId": f"run-{trace_id[:8]}-{status}",
        "httpRequest": {"requestMethod": "GET",
                        "requestUrl": "https://backend-abc123-uc.a.run.app/health",
                        "status": status, "responseSize": "120", "userAgent": "monitor/0.1.0",
                        "remoteIp": "203.0.113.7", "serverIp": "216.239.32.53",
                        "latency": "0.012s", "protocol": "HTTP/1.1"},
        "resource": {"type": "cloud_run_revision", "labels": {
            "project_id": project, "service_name": "backend", "location": "us-central1",
            "revision_name": "backend-00042-xyz", "configuration_name": "backend"}},
        "timestamp": _now(), "receiveTimestamp": _now(),
        "severity": "ERROR" if status >= 500 or status == 429 else "INFO",
        "labels": {"instanceId": "00c61b117c"},
        "logName": f"projects/{project}/logs/run.googleapis.com%2Frequests",
        "trace": f"projects/{project}/traces/{trace_id}",
    }
    if text is not None:
        entry["textPayload"] = text
    return entry


def google_error(code: int, status: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "status": status}},
                             status=code)


_TRACE = re.compile(r'trace="([^"]+)"')
_TYPE = re.compile(r'resource\.type="([^"]+)"')
_SINCE = re.compile(r'timestamp>="([^"]+)"')
_UNTIL = re.compile(r'timestamp<="([^"]+)"')


@dataclass
class FakeLogging:
    """The fake's state: stored entries, what it was asked, how it misbehaves."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    # None: answer; "hang": never answer; an int: that HTTP error.
    fail: str | int | None = None
    hanging: int = 0  # requests waiting in "hang" mode right now
    # Tokens the API accepts (the metadata fake's access_tokens); None: any Bearer.
    valid_tokens: list[str] | None = None
    url: str = ""

    def add(self, *entries: dict[str, Any]) -> None:
        self.entries.extend(entries)

    async def entries_list(self, request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token or (
                self.valid_tokens is not None and token not in self.valid_tokens):
            return google_error(401, "UNAUTHENTICATED",
                                "Request had invalid authentication credentials.")
        try:
            body = await request.json()
        except ValueError:
            return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        self.calls.append(body)
        if self.fail == "hang":
            self.hanging += 1
            try:
                await asyncio.Event().wait()
            finally:
                self.hanging -= 1
        if self.fail == 403:
            return google_error(403, "PERMISSION_DENIED",
                                "Permission 'logging.logEntries.list' denied on resource "
                                "(or it may not exist).")
        if isinstance(self.fail, int):
            return google_error(self.fail, "INTERNAL", "Internal error encountered.")
        names = body.get("resourceNames") or []
        log_filter = str(body.get("filter", ""))
        trace = _TRACE.search(log_filter)
        if not names or trace is None:
            return google_error(400, "INVALID_ARGUMENT",
                                "this fake wants resourceNames and a trace restriction")
        types = set(_TYPE.findall(log_filter))
        since, until = _SINCE.search(log_filter), _UNTIL.search(log_filter)
        matched = [
            e for e in self.entries
            if e.get("trace") == trace[1]
            and (not types or e["resource"]["type"] in types)
            and (since is None or e["timestamp"] >= since[1].replace("Z", ""))
            and (until is None or e["timestamp"][:19] <= until[1].replace("Z", ""))
            and any(e["trace"].startswith(f"{name}/") for name in names)
        ]
        if body.get("orderBy") == "timestamp desc":
            matched.sort(key=lambda e: e["timestamp"], reverse=True)
        size = min(int(body.get("pageSize") or 50), 1000)
        start = int(body.get("pageToken") or 0)
        page = matched[start:start + size]
        answer: dict[str, Any] = {"entries": page} if page else {}
        if start + size < len(matched):
            answer["nextPageToken"] = str(start + size)
        return web.json_response(answer)


@asynccontextmanager
async def serve_fake_logging() -> AsyncIterator[FakeLogging]:
    """The fake on 127.0.0.1; ``url`` is for ``attribution.endpoint``."""
    fake = FakeLogging()
    app = web.Application()
    app.router.add_post("/v2/entries:list", fake.entries_list)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake.fail = None
        await runner.cleanup()


@asynccontextmanager
async def logging_credentials(fake: FakeLogging,
                              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeMetadata]:
    """The fake metadata server of tests/support/metadata.py with google-auth aimed
    at it, as on Cloud Run; ``fake`` accepts only the access tokens it hands out."""
    async with fake_metadata() as served:
        fake.valid_tokens = served.access_tokens
        with point_google_auth_at(served.host, monkeypatch):
            yield served
