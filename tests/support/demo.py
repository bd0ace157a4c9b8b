"""`monitor demo` as a user starts it: a subprocess on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from tests.support.ports import free_port_pair


@dataclass
class RunningDemo:
    base: str  # the daemon: /metrics, /api/status, /
    control: str  # the fault switch
    process: asyncio.subprocess.Process

    async def flip(self, target: str, mode: str) -> None:
        async with aiohttp.ClientSession() as session, \
                session.post(f"{self.control}/fault/{target}/{mode}") as response:
            assert response.status == 200, await response.text()

    async def status(self) -> dict[str, object]:
        async with aiohttp.ClientSession() as session, \
                session.get(f"{self.base}/api/status") as response:
            data: dict[str, object] = await response.json()
            return data


@asynccontextmanager
async def running_demo(*args: str) -> AsyncIterator[RunningDemo]:
    """Start `monitor demo`, wait until ready (bounded), stop it with SIGINT on exit."""
    port = free_port_pair()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "demo", "--port", str(port), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ},
    )
    demo = RunningDemo(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}", process)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(150):  # bounded: 15 s
                if process.returncode is not None:
                    raise AssertionError(f"monitor demo exited with {process.returncode}")
                try:
                    async with session.get(f"{demo.base}/-/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("monitor demo did not become ready in 15 s")
        yield demo
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()
