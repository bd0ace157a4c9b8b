"""`kind: tcp` against real asyncio servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from monitor.config.tcp import TcpProbeConfig
from monitor.probes.base import Result
from monitor.probes.tcp import TcpProbe
from tests.support.running import run_probe

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()


def config(port: int, **fields: Any) -> TcpProbeConfig:
    return TcpProbeConfig(name="tcp", kind="tcp", target=f"127.0.0.1:{port}",
                          interval="10s", timeout=fields.pop("timeout", "2s"), **fields)


async def run(cfg: TcpProbeConfig) -> Result:
    return await run_probe(TcpProbe(cfg), debug=True)


async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(b"+PONG " + line)
    await writer.drain()
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # never answers; returns when the probe closes
    writer.close()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_connect_only_succeeds_and_records_connect_phase() -> None:
    """Without send/expect a run is a connect; the phase lands in the result."""
    async with server(silent) as port:
        result = await run(config(port))
    assert result.ok, result.detail
    assert "connect" in result.phases
    assert result.samples == []  # no tcp phase metric in the contract


@pytest.mark.parametrize(("fields", "ok"), [
    pytest.param({"expect": "+PONG"}, True, id="literal"),
    pytest.param({"expect_regex": r"^\+PONG ping\r?\n$"}, True, id="regex"),
    pytest.param({"expect": "+OK"}, False, id="literal-mismatch"),
])
async def test_send_and_expect(fields: dict[str, Any], ok: bool) -> None:
    """The answer to `send` is matched literally or by regex; a mismatch is an assertion."""
    async with server(banner) as port:
        result = await run(config(port, send="ping\n", **fields))
    assert result.ok is ok, result.detail
    if not ok:
        assert result.reason == "assertion"
        assert "+PONG ping" in result.detail  # the detail shows what came instead


async def test_refused(free_port: int) -> None:
    """Nothing listening -> connect_refused."""
    result = await run(config(free_port))
    assert (result.ok, result.reason) == (False, "connect_refused")


async def test_closed_without_answer_is_a_reset() -> None:
    """A peer that hangs up before answering -> connection_reset."""
    async with server(hang_up) as port:
        result = await run(config(port, send="ping\n", expect="+PONG"))
    assert (result.ok, result.reason) == (False, "connection_reset")


async def test_no_answer_is_a_timeout() -> None:
    """A peer that accepts but never answers -> timeout, classified by the probe itself."""
    async with server(silent) as port:
        result = await run(config(port, timeout="300ms", send="ping\n", expect="+PONG"))
    assert (result.ok, result.reason) == (False, "timeout")
    assert "no answer" in result.detail


async def test_read_cap_bounds_the_search() -> None:
    """A peer that streams without ever matching fails at max_read_bytes, not at the timeout."""
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(100):
            writer.write(b"x" * 1024)
            await writer.drain()
        writer.close()

    async with server(flood) as port:
        result = await run(config(port, expect="never", max_read_bytes=4096))
    assert (result.ok, result.reason) == (False, "assertion")
    assert "first 4096 bytes" in result.detail


def test_expect_and_expect_regex_exclude_each_other() -> None:
    """Giving both expectations is a config error."""
    problems = config(1, expect="a", expect_regex="b").problems()
    assert problems == [("expect_regex",
                         "give either expect (literal text) or expect_regex, not both")]
