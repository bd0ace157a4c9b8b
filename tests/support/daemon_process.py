"""`monitor run` as a real subprocess, for tests about the process itself
(file-descriptor limits, signals, log volume).

:func:`run_daemon` starts it with its log in a file (a pipe nobody reads
would block it), optionally with a lowered RLIMIT_NOFILE (set in the child
before exec, soft and hard, so the daemon cannot raise it), waits until
``/-/ready`` answers, and kills it at the end if a test did not stop it.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.ports import free_port


@dataclass
class RunningDaemon:
    process: asyncio.subprocess.Process
    port: int
    log_path: Path
    auth: str | None = None  # an Authorization header value

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.auth} if self.auth else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    async def metrics(self, session: aiohttp.ClientSession, timeout: float = 10) -> str:
        """/metrics as Prometheus scrapes it (gzip, its default 10 s timeout)."""
        async with session.get(f"{self.base}/metrics", headers={
                **self.headers, "Accept-Encoding": "gzip"},
                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            assert response.status == 200, response.status
            return await response.text()

    async def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then the exit status (raises TimeoutError past ``timeout``)."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` in an exposition whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def reasons(text: str) -> dict[str, float]:
    """Failures by reason, summed over probes."""
    found: dict[str, float] = {}
    for match in re.finditer(r'monitor_probe_failures_total\{[^}]*reason="(\w+)"[^}]*\} (\S+)',
                             text):
        found[match[1]] = found.get(match[1], 0.0) + float(match[2])
    return {k: v for k, v in found.items() if v}


@asynccontextmanager
async def run_daemon(config: Path, port: int, *, nofile: int | None = None,
                     auth: str | None = None, env: dict[str, str] | None = None,
                     ) -> AsyncIterator[RunningDaemon]:
    log_path = config.with_suffix(".log")

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "-c", str(config),
            stdout=log_file, stderr=log_file, env={**os.environ, **(env or {})},
            preexec_fn=limit,  # only setrlimit, in the child before exec
        )
    daemon = RunningDaemon(process, port, log_path, auth)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(150):  # bounded: 15 s for start-up on a loaded machine
                try:
                    async with session.get(f"{daemon.base}/-/ready",
                                           headers=daemon.headers) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                if process.returncode is not None:
                    raise AssertionError(f"the daemon exited {process.returncode}:\n"
                                         f"{daemon.log()[-3000:]}")
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the daemon never got ready:\n{daemon.log()[-3000:]}")
        yield daemon
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


_BACKEND = """
import asyncio, sys
from aiohttp import web
from monitor.demo.backends import Faults, backend_app

async def main():
    runner = web.AppRunner(backend_app("backend-a", Faults()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


@asynccontextmanager
async def run_backend() -> AsyncIterator[int]:
    """The demo backend in a process of its own (so a test flooding the daemon from its
    own event loop does not slow the probes' target down); yields its port."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BACKEND, str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(150):  # bounded: 15 s
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the backend never listened")
        yield port
    finally:
        process.kill()
        await process.wait()
