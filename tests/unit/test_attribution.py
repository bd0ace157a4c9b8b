"""monitor.attribution against the fake Cloud Logging API of tests/support/fake_logging.py.

Sources of the wire format and the example entries are named in that module:
Cloud Logging "Method: entries.list", "LogEntry" and "HttpRequest" references,
the API design guide's "Errors", "External Application Load Balancer logging
and monitoring" (statusDetails values), Cloud Run "Logging and viewing logs"
and "Troubleshoot Cloud Run issues" (no available instance, request timeout).
Credentials come from the fake metadata server through GCE_METADATA_HOST, as
on Cloud Run.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.attribution import ATTRIBUTIONS, Attributor, classify, trace_filter
from monitor.attribution_logging import LoggingClient
from monitor.config.tracing import AttributionConfig
from monitor.probes.base import Result
from tests.support.fake_logging import (
    NO_INSTANCE,
    REQUEST_TIMEOUT,
    FakeLogging,
    lb_entry,
    run_entry,
)
from tests.support.metadata import FakeMetadata

PROJECT = "demo-project"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def settings(fake: FakeLogging, **fields: Any) -> AttributionConfig:
    return AttributionConfig.model_validate({
        "project": PROJECT, "endpoint": fake.url, "delay": "10ms", "timeout": "2s", **fields})


def failed(trace_id: str = TRACE, *, kind: str = "http", reason: str = "http_status") -> Result:
    return Result(probe="web", kind=kind, ok=False, reason=reason,  # type: ignore[arg-type]
                  detail="status 502", started_at=time.time(), duration=0.01,
                  facts={"trace_id": trace_id})


class Seen:
    """What the attributor reported."""

    def __init__(self) -> None:
        self.attributed: list[tuple[str, str, str, str]] = []
        self.dropped: list[str] = []

    def on_attributed(self, probe: str, trace_id: str, attribution: str, detail: str) -> None:
        self.attributed.append((probe, trace_id, attribution, detail))

    async def wait(self, count: int) -> None:
        for _ in range(300):  # bounded: 6 s
            if len(self.attributed) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.attributed)} attributions, wanted {count}")


def attributor(fake: FakeLogging, seen: Seen, **fields: Any) -> Attributor:
    return Attributor(settings(fake, **fields), attributed=seen.on_attributed,
                      dropped=seen.dropped.append)


@pytest.mark.parametrize(("entries", "expected"), [
    pytest.param([lb_entry(PROJECT, TRACE, 502, "failed_to_pick_backend")],
                 "lb:failed_to_pick_backend", id="lb-no-healthy-backend"),
    pytest.param([lb_entry(PROJECT, TRACE, 504, "backend_timeout")],
                 "lb:backend_timeout", id="lb-backend-timeout"),
    pytest.param([lb_entry(PROJECT, TRACE, 502,
                           "backend_connection_closed_before_data_sent_to_client")],
                 "lb:backend_connection_closed", id="lb-closed-before-data"),
    pytest.param([lb_entry(PROJECT, TRACE, 502, "failed_to_connect_to_backend")],
                 "lb:failed_to_connect_to_backend", id="lb-cannot-connect"),
    pytest.param([lb_entry(PROJECT, TRACE, 403, "denied_by_security_policy")],
                 "lb:other", id="lb-other-own-answer"),
    pytest.param([lb_entry(PROJECT, TRACE, 429, "response_sent_by_backend"),
                  run_entry(PROJECT, TRACE, 429, NO_INSTANCE)],
                 "run:no_instance", id="run-no-instance-behind-lb"),
    pytest.param([run_entry(PROJECT, TRACE, 504, REQUEST_TIMEOUT)],
                 "run:request_timeout", id="run-request-timeout"),
    pytest.param([lb_entry(PROJECT, TRACE, 500, "response_sent_by_backend"),
                  run_entry(PROJECT, TRACE, 500)], "app", id="app-own-500"),
    pytest.param([], "not_found", id="nothing-logged"),
])
def test_classify_documented_entries(entries: list[dict[str, Any]], expected: str) -> None:
    """Each documented log shape maps to its fixed attribution value."""
    attribution, detail = classify(entries)
    assert attribution == expected and attribution in ATTRIBUTIONS and detail


async def test_filter_names_the_trace_and_the_platform_resources(
        fake_logging: FakeLogging, logging_metadata: FakeMetadata) -> None:
    """The request names projects/P/traces/T, both resource types, newest first."""
    fake_logging.add(lb_entry(PROJECT, TRACE, 502, "failed_to_pick_backend"),
                     lb_entry(PROJECT, "0" * 31 + "1", 502, "backend_timeout"))
    seen = Seen()
    worker = attributor(fake_logging, seen)
    worker.start()
    try:
        worker.submit(failed())
        await seen.wait(1)
    finally:
        await worker.stop()
    assert seen.attributed[0][1:3] == (TRACE, "lb:failed_to_pick_backend")
    [call] = fake_logging.calls
    assert call["resourceNames"] == [f"projects/{PROJECT}"]
    assert f'trace="projects/{PROJECT}/traces/{TRACE}"' in call["filter"]
    assert 'resource.type="http_load_balancer"' in call["filter"]
    assert 'resource.type="cloud_run_revision"' in call["filter"]
    assert call["orderBy"] == "timestamp desc"
    # One access token, with the read-only logging scope.
    assert [c.get("scopes") for c in logging_metadata.token_calls] == [
        "https://www.googleapis.com/auth/logging.read"]


def test_filter_bounds_the_time() -> None:
    """The filter bounds timestamps around the run (entries:list scans less)."""
    text = trace_filter(PROJECT, TRACE, 1_800_000_000.0, 300)
    assert 'timestamp>="2027-01-15T07:59:00Z"' in text
    assert 'timestamp<="2027-01-15T08:05:00Z"' in text


@pytest.mark.usefixtures("logging_metadata")
async def test_paging_follows_next_page_token_up_to_max_pages(fake_logging: FakeLogging) -> None:
    """250 entries at pageSize 100: three pages; max_pages 2 stops after two."""
    fake_logging.add(*[run_entry(PROJECT, TRACE, 200) for _ in range(249)],
                     run_entry(PROJECT, TRACE, 429, NO_INSTANCE))
    client = LoggingClient(fake_logging.url)
    try:
        entries, pages = await client.list_entries(
            PROJECT, trace_filter(PROJECT, TRACE, time.time(), 300), page_size=100,
            max_pages=5)
        assert (len(entries), pages) == (250, 3)
        assert [c.get("pageToken") for c in fake_logging.calls] == [None, "100", "200"]
        assert classify(entries)[0] == "run:no_instance"
        entries, pages = await client.list_entries(
            PROJECT, trace_filter(PROJECT, TRACE, time.time(), 300), page_size=100,
            max_pages=2)
        assert (len(entries), pages) == (200, 2)
    finally:
        await client.close()


@pytest.mark.usefixtures("logging_metadata")
async def test_lookups_are_capped_per_minute_and_the_rest_counted(
        fake_logging: FakeLogging) -> None:
    """15 failures with a cap of 10 a minute: 10 lookups, 5 dropped as rate_limited."""
    seen = Seen()
    worker = attributor(fake_logging, seen, max_lookups_per_minute=10)
    worker.start()
    try:
        for i in range(15):
            worker.submit(failed(f"{i + 1:032x}"))
        await seen.wait(10)
        await asyncio.sleep(0.1)  # nothing more may arrive
    finally:
        await worker.stop()
    assert len(seen.attributed) == len(fake_logging.calls) == 10
    assert seen.dropped == ["rate_limited"] * 5
    assert {a for _, _, a, _ in seen.attributed} == {"not_found"}


@pytest.mark.usefixtures("logging_metadata")
async def test_full_queue_drops_and_counts(fake_logging: FakeLogging) -> None:
    """A hanging API fills the bounded queue; the overflow is dropped as queue_full."""
    fake_logging.fail = "hang"
    seen = Seen()
    worker = attributor(fake_logging, seen, queue_size=2, max_lookups_per_minute=20, timeout="5s")
    worker.start()
    try:
        for i in range(8):
            worker.submit(failed(f"{i + 1:032x}"))
            await asyncio.sleep(0.05)  # let the two workers take theirs
    finally:
        await worker.stop()
    # Two lookups hang in the workers, two wait in the queue, four are dropped.
    assert seen.dropped == ["queue_full"] * 4


def test_only_failed_http_like_runs_with_a_trace_are_looked_up() -> None:
    """Successes, dns failures, load runs and runs without a trace id are skipped."""
    config = AttributionConfig(project=PROJECT, endpoint="http://127.0.0.1:9")
    seen = Seen()
    worker = Attributor(config, attributed=seen.on_attributed, dropped=seen.dropped.append)
    ok = failed()
    ok.ok = True
    for result in (ok, failed(reason="dns"), failed(kind="load"), failed(kind="tcp")):
        worker.submit(result)
    no_trace = failed()
    no_trace.facts = {}
    worker.submit(no_trace)
    assert worker._queue.qsize() == 0
    worker.submit(failed())
    assert worker._queue.qsize() == 1


@pytest.mark.usefixtures("logging_metadata")
@pytest.mark.parametrize(("fail", "says"), [
    pytest.param(500, "HTTP 500: INTERNAL", id="500"),
    pytest.param(403, "HTTP 403: PERMISSION_DENIED", id="403"),
    pytest.param("hang", "no answer from Cloud Logging within 0.3s", id="hang"),
])
async def test_a_failing_api_is_lookup_failed(fake_logging: FakeLogging, fail: str | int,
                                              says: str) -> None:
    """Error bodies and a hanging API end as lookup_failed with a readable why."""
    fake_logging.fail = fail
    seen = Seen()
    worker = attributor(fake_logging, seen, timeout="300ms")
    worker.start()
    try:
        worker.submit(failed())
        await seen.wait(1)
    finally:
        await worker.stop()
    [(_, _, attribution, detail)] = seen.attributed
    assert attribution == "lookup_failed" and says in detail


async def test_no_credentials_is_lookup_failed(fake_logging: FakeLogging, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A key file that does not exist: lookup_failed naming the credential problem."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    seen = Seen()
    worker = attributor(fake_logging, seen)
    worker.start()
    try:
        worker.submit(failed())
        await seen.wait(1)
    finally:
        await worker.stop()
    [(_, _, attribution, detail)] = seen.attributed
    assert attribution == "lookup_failed" and "no credentials" in detail
    assert fake_logging.calls == []
