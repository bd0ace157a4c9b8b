"""What hostile clients do to a real daemon's server: figures, before/after in one run.

Run by hand: python bench/server_abuse.py [--src DIR ...]

Each --src is a source tree of this package (default: the working tree; for a
before/after pair export another commit, e.g. `git archive main | tar -x -C
/tmp/main-src`, and pass both). For each tree a fresh `monitor run` (that
tree on PYTHONPATH) probes a local backend with 10 http probes every 1 s
(timeout 500 ms, half by the name `localhost`), basic auth with a bcrypt
hash of cost 10, and gets, on 127.0.0.1 only:

- enumeration: 15 requests with an unknown user, 15 with a wrong password
  (median answer times and their ratio);
- bad logins: 50 clients sending wrong passwords for 8 s while a gzip
  scrape with the right password runs every second (slowest scrape, dns
  failures of the probes meanwhile);
- idle flood (RLIMIT_NOFILE 1024): 1100 connections that send nothing, held
  20 s, a scrape every 2 s (answered, slowest), failures by reason, log lines;
- slowloris: 300 connections trickling a request head a byte a second, how
  many the server still holds after 15 s;
- malformed: 1000 `GET /\\xff`, the log lines and bytes they caused;
- SIGTERM with a half-sent body, idle and slowloris connections open: seconds
  to exit, and the exit status.

Every loop is bounded in count and time. The machine is shared: compare the
columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import resource
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import bcrypt
from aiohttp import web

PASSWORD = "right-password"  # noqa: S105 - a throwaway password on loopback
GOOD = "Basic " + base64.b64encode(f"prom:{PASSWORD}".encode()).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    def __init__(self, src: Path, tmp: Path, backend: int, *, nofile: int | None = None) -> None:
        self.src, self.tmp, self.nofile = src, tmp, nofile
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
        self.config = tmp / f"abuse-{self.port}.yaml"
        probes = [f"  - {{name: p{i}, kind: http, url: 'http://"
                  f"{'localhost' if i % 2 else '127.0.0.1'}:{backend}/health'}}"
                  for i in range(10)]
        self.config.write_text("\n".join([
            "global: {interval: 1s, timeout: 500ms}",
            f"server: {{listen: '127.0.0.1:{self.port}', basic_auth_users: {{prom: '{hashed}'}}}}",
            "probes:", *probes, ""]))
        self.log = self.config.with_suffix(".log")
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Daemon:
        def limit() -> None:
            if self.nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor", "run", "-c", str(self.config),
                stdout=log, stderr=log, preexec_fn=limit,  # setrlimit only, before exec
                env={**os.environ, "PYTHONPATH": str(self.src)}, cwd=str(self.tmp))
        async with aiohttp.ClientSession() as session:
            for _ in range(150):  # 15 s
                try:
                    async with session.get(f"{self.base}/-/ready",
                                           headers={"Authorization": GOOD}) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # a first round of runs
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log_text(self) -> bytes:
        return self.log.read_bytes()

    async def scrape(self, session: aiohttp.ClientSession) -> tuple[str, float]:
        started = time.perf_counter()
        async with session.get(f"{self.base}/metrics", headers={
                "Authorization": GOOD, "Accept-Encoding": "gzip"},
                timeout=aiohttp.ClientTimeout(total=10)) as response:
            text = await response.text()
            assert response.status == 200, response.status
        return text, time.perf_counter() - started


def failures(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for match in re.finditer(r'monitor_probe_failures_total\{[^}]*reason="(\w+)"[^}]*\} (\S+)',
                             text):
        found[match[1]] = found.get(match[1], 0.0) + float(match[2])
    return {k: v for k, v in found.items() if v}


async def request(port: int, head: str) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1"))
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        await asyncio.wait_for(reader.read(), 15)
    writer.transport.abort()
    return time.perf_counter() - started


async def enumeration(daemon: Daemon) -> dict[str, str]:
    async def median(header: str) -> float:
        times = [await request(daemon.port, f"GET /-/healthy HTTP/1.1\r\nHost: x\r\n"
                               f"Authorization: {header}\r\nConnection: close\r\n\r\n")
                 for _ in range(15)]
        return statistics.median(times)

    unknown = await median(basic("nobody", "x"))
    wrong = await median(basic("prom", "x"))
    return {"wrong user ms": f"{unknown * 1000:.1f}", "wrong password ms": f"{wrong * 1000:.1f}",
            "user/password ratio": f"{unknown / wrong:.2f}"}


async def bad_logins(daemon: Daemon) -> dict[str, str]:
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as session:
        before, _ = await daemon.scrape(session)
        stop = time.monotonic() + 8

        async def wrong(index: int) -> None:
            for attempt in range(2000):
                if time.monotonic() > stop:
                    return
                try:
                    async with session.get(f"{daemon.base}/metrics", headers={
                            "Authorization": basic("prom", f"bad-{index}-{attempt}")},
                            timeout=aiohttp.ClientTimeout(total=30)) as response:
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] = statuses.get(0, 0) + 1

        flood = [asyncio.create_task(wrong(i)) for i in range(50)]
        slowest, failed = 0.0, 0
        for _ in range(8):
            try:
                _, took = await daemon.scrape(session)
                slowest = max(slowest, took)
            except (aiohttp.ClientError, TimeoutError, AssertionError):
                failed += 1
            await asyncio.sleep(1)
        await asyncio.gather(*flood)
        after, _ = await daemon.scrape(session)
    dns = failures(after).get("dns", 0) - failures(before).get("dns", 0)
    return {"slowest gzip scrape ms": f"{slowest * 1000:.0f}", "scrapes failed": str(failed),
            "dns failures": f"{dns:.0f}", "answers": str(dict(sorted(statuses.items())))}


async def idle_flood(daemon: Daemon) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    socks = []
    async with aiohttp.ClientSession() as session:
        before, _ = await daemon.scrape(session)
        lines_before = daemon.log_text().count(b"\n")
        for _ in range(1100):
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", daemon.port)), 2)
                socks.append(sock)
            except (OSError, TimeoutError):
                sock.close()
        ok, slowest = 0, 0.0
        for _ in range(10):  # 20 s
            try:
                _, took = await daemon.scrape(session)
                ok, slowest = ok + 1, max(slowest, took)
            except (aiohttp.ClientError, TimeoutError, AssertionError):
                pass
            await asyncio.sleep(2)
        for sock in socks:
            sock.close()
        await asyncio.sleep(1)
        after, _ = await daemon.scrape(session)
    new = {k: v - failures(before).get(k, 0) for k, v in failures(after).items()}
    lines = daemon.log_text().count(b"\n") - lines_before
    return {"scrapes answered": f"{ok}/10", "slowest ms": f"{slowest * 1000:.0f}",
            "probe failures": str({k: int(v) for k, v in new.items() if v}),
            "log lines": str(lines)}


async def slowloris(daemon: Daemon) -> dict[str, str]:
    streams = []
    for _ in range(300):
        with contextlib.suppress(OSError):
            streams.append(await asyncio.open_connection("127.0.0.1", daemon.port))
    writers = [writer for _, writer in streams]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for char in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 30:
            if writer.is_closing():
                return
            try:
                writer.write(bytes([char]))
                await writer.drain()
            except OSError:
                return
            await asyncio.sleep(1)

    tasks = [asyncio.create_task(trickle(w)) for w in writers]
    await asyncio.sleep(15)
    # Closed by the server: the reader saw EOF or a reset.
    held = sum(1 for reader, _ in streams
               if not reader.at_eof() and reader.exception() is None)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for writer in writers:
        writer.transport.abort()
    return {"held after 15 s": f"{held}/{len(writers)}"}


async def malformed(daemon: Daemon) -> dict[str, str]:
    before = daemon.log_text()
    slots = asyncio.Semaphore(20)

    async def one() -> None:
        async with slots:
            await request(daemon.port, "GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n")

    await asyncio.gather(*(one() for _ in range(1000)))
    await asyncio.sleep(0.5)
    grown = daemon.log_text()[len(before):]
    return {"log lines": str(grown.count(b"\n")), "log KB": f"{len(grown) / 1024:.0f}",
            "tracebacks": str(grown.count(b"Traceback"))}


async def sigterm(daemon: Daemon) -> dict[str, str]:
    writers = []
    for data in (f"POST /-/reload HTTP/1.1\r\nHost: x\r\nAuthorization: {GOOD}\r\n"
                 "Content-Length: 1000\r\n\r\nonly-the-start",
                 "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: a") * 5:
        _, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(data.encode())
        writers.append(writer)
    await asyncio.sleep(0.5)
    assert daemon.process is not None
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(daemon.process.wait(), 30)
    except TimeoutError:
        code = None
    took = time.monotonic() - started
    for writer in writers:
        writer.transport.abort()
    return {"seconds to exit": f"{took:.2f}", "exit status": str(code)}


async def backend() -> tuple[web.AppRunner, int]:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site.port


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", type=Path,
                        help="a source tree of this package (repeatable)")
    args = parser.parse_args()
    sources = args.src or [Path(__file__).resolve().parents[1]]
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))
    tmp = Path(tempfile.mkdtemp(prefix="abuse-"))
    runner, port = await backend()
    print(f"load {os.getloadavg()[0]:.2f}; sources: {', '.join(map(str, sources))}", flush=True)
    cases = [("enumeration", enumeration, None), ("bad logins", bad_logins, None),
             ("idle flood (nofile 1024)", idle_flood, 1024), ("slowloris", slowloris, None),
             ("malformed", malformed, None), ("SIGTERM", sigterm, None)]
    try:
        for title, case, nofile in cases:
            print(f"\n{title}", flush=True)
            for src in sources:
                async with Daemon(src, tmp, port, nofile=nofile) as daemon:
                    figures = await case(daemon)
                print(f"  {src}: " + "; ".join(f"{k} {v}" for k, v in figures.items()),
                      flush=True)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
