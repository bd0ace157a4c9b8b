"""Soak: a real daemon for an hour, 100 probes against hostile and healthy targets.

Run by hand: python bench/soak.py [--duration 3600] [--probes 100]

Starts, on 127.0.0.1 only, healthy targets (HTTP, HTTPS with a trustme CA,
a TCP echo) and hostile ones (never answers, closes at once, resets,
garbage instead of HTTP, a 100 KiB response head, a body trickled a byte
at a time, an endless chunked body, a redirect loop, 503s and 429s, a
refused port, a certificate for another name), then `monitor run` as a
subprocess with basic auth, probing them every 5 s (timeout 3 s).

Every 15 s /metrics is scraped as Prometheus does (gzip, with the right
password) and /api/status fetched. Every 60 s hostile clients hit the
daemon's own server for about 15 s: 300 idle connections, a slowloris,
40 wrong passwords, 100 malformed requests (all bounded in count and time).

Printed: RSS, open file descriptors and scrape times of the daemon at the
start (after a minute of warm-up) and at the end, their ratios, one line
every 5 minutes, the failure reasons seen, skipped runs, and the log
volume. The machine is shared and noisy: read the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import logging
import os
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import bcrypt
import trustme
from aiohttp import web

INTERVAL = "5s"
TIMEOUT = "3s"
SCRAPE_EVERY = 15.0
HOSTILE_EVERY = 60.0
REPORT_EVERY = 300.0
WARMUP = 60.0
PASSWORD = "soak-password"  # noqa: S105 - a throwaway password on loopback


# -- targets ---------------------------------------------------------------------
def healthy_app() -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return web.Response(text='{"status": "ok"}', content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no\n")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/loop?n={int(request.query.get('n', '0')) + 1}")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(100_000):  # bounded: 100 000 x 64 KiB at most, cut by the probe's cap
            await response.write(b"x" * 65536)
        return response

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        await response.prepare(request)
        for _ in range(100):  # 10 s of trickle at most, past the probe's timeout
            await response.write(b"x")
            await asyncio.sleep(0.1)
        return response

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/loop", loop)
    app.router.add_get("/endless", endless)
    app.router.add_get("/trickle", trickle)
    return app


async def raw_server(kind: str) -> asyncio.Server:
    """A TCP server that misbehaves below HTTP."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if kind == "silent":  # accepts, reads, never answers (until the probe gives up)
                await asyncio.wait_for(reader.read(65536), 10)
                await asyncio.sleep(10)
            elif kind == "close":
                pass
            elif kind == "reset":
                await reader.read(1)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            elif kind == "garbage":
                await reader.read(65536)
                writer.write(b"\x00\xffSSH-2.0-OpenSSH_9.2\r\n" * 10)
                await writer.drain()
            elif kind == "bighead":
                await reader.read(65536)
                writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 100_000 + b"\r\n\r\n")
                await writer.drain()
            elif kind == "echo":
                while data := await asyncio.wait_for(reader.read(65536), 10):
                    writer.write(data)
                    await writer.drain()
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass  # the probe gave up, or the soak ends: nothing to report
        finally:
            writer.transport.abort()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the daemon's config -----------------------------------------------------------
def probe_lines(count: int, ports: dict[str, int], ca_file: str) -> list[str]:
    http = f"http://127.0.0.1:{ports['http']}"
    https = f"https://localhost:{ports['https']}"
    healthy = [
        f"kind: http, url: '{http}/health', expect: {{body_regex: 'ok'}}",
        f"kind: http, url: 'http://localhost:{ports['http']}/health?key=soak-query-secret'",
        f"kind: http, url: '{https}/health', tls: {{ca_file: '{ca_file}'}}",
        f"kind: tls, target: 'localhost:{ports['https']}', tls: {{ca_file: '{ca_file}'}}",
        f"kind: tcp, target: '127.0.0.1:{ports['echo']}', send: 'ping', expect: 'ping'",
    ]
    hostile = [
        f"kind: http, url: 'http://127.0.0.1:{ports['silent']}/'",
        f"kind: http, url: 'http://127.0.0.1:{ports['close']}/'",
        f"kind: http, url: 'http://127.0.0.1:{ports['reset']}/'",
        f"kind: http, url: 'http://127.0.0.1:{ports['garbage']}/'",
        f"kind: http, url: 'http://127.0.0.1:{ports['bighead']}/'",
        f"kind: http, url: '{http}/trickle'",
        f"kind: http, url: '{http}/endless', max_body_bytes: 1048576",
        f"kind: http, url: '{http}/loop', max_redirects: 5",
        f"kind: http, url: '{http}/status/503'",
        f"kind: http, url: '{http}/status/429'",
        f"kind: http, url: 'http://127.0.0.1:{ports['refused']}/'",
        f"kind: http, url: 'https://127.0.0.1:{ports['https']}/health', "
        f"tls: {{ca_file: '{ca_file}', server_name: wrong.example}}",
        f"kind: tcp, target: '127.0.0.1:{ports['silent']}', send: 'x', expect: 'never'",
    ]
    lines = []
    for index in range(count):
        # Half healthy, half hostile, cycling through each list.
        pool = healthy if index % 2 == 0 else hostile
        body = pool[(index // 2) % len(pool)]
        lines.append(f"  - {{name: p{index:03d}, {body}}}")
    return lines


def write_config(path: Path, count: int, ports: dict[str, int], ca_file: str,
                 listen: int) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    path.write_text("\n".join([
        f"global: {{interval: {INTERVAL}, timeout: {TIMEOUT}, labels: {{vantage: soak}}}}",
        f"server: {{listen: '127.0.0.1:{listen}', basic_auth_users: {{prom: '{hashed}'}}}}",
        "probes:",
        *probe_lines(count, ports, ca_file),
        "",
    ]))


# -- measuring the daemon ------------------------------------------------------------
@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    scrape: float  # seconds, /metrics with gzip
    status: float  # seconds, /api/status
    size: int  # bytes of /metrics, uncompressed


@dataclass
class Soak:
    pid: int
    base: str
    auth: str
    samples: list[Sample] = field(default_factory=list)
    scrape_failures: int = 0
    hostile: dict[str, int] = field(default_factory=dict)

    def rss_and_fds(self) -> tuple[float, int]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]
        return rss, len(os.listdir(f"/proc/{self.pid}/fd"))

    async def scrape(self, session: aiohttp.ClientSession, started: float) -> None:
        headers = {"Authorization": self.auth, "Accept-Encoding": "gzip"}
        timeout = aiohttp.ClientTimeout(total=10)  # Prometheus' default scrape timeout
        try:
            t0 = time.perf_counter()
            async with session.get(f"{self.base}/metrics", headers=headers,
                                   timeout=timeout, auto_decompress=False) as response:
                body = await response.read()
                assert response.status == 200, response.status
            scrape = time.perf_counter() - t0
            size = len(gzip.decompress(body)) if response.headers.get(
                "Content-Encoding") == "gzip" else len(body)
            t0 = time.perf_counter()
            async with session.get(f"{self.base}/api/status", headers=headers,
                                   timeout=timeout) as response:
                await response.read()
            status = time.perf_counter() - t0
        except (aiohttp.ClientError, TimeoutError, AssertionError) as exc:
            self.scrape_failures += 1
            print(f"  scrape failed: {type(exc).__name__}: {exc}", flush=True)
            return
        rss, fds = self.rss_and_fds()
        self.samples.append(Sample(time.monotonic() - started, rss, fds, scrape, status, size))


# -- hostile clients against the daemon's server ----------------------------------------
async def hostile_round(port: int, counts: dict[str, int]) -> None:
    """About 15 s of abuse; every loop bounded in count and time."""
    loop = asyncio.get_running_loop()

    async def idle_connections() -> None:
        socks = []
        for _ in range(300):
            s = socket.socket()
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 2)
                socks.append(s)
            except (OSError, TimeoutError):
                s.close()
        counts["idle"] = counts.get("idle", 0) + len(socks)
        await asyncio.sleep(12)
        for s in socks:
            s.close()

    async def slowloris() -> None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for char in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20:
                writer.write(bytes([char]))
                await writer.drain()
                await asyncio.sleep(0.5)
            writer.close()
        except OSError:
            counts["slowloris_cut"] = counts.get("slowloris_cut", 0) + 1

    async def wrong_passwords(session: aiohttp.ClientSession) -> None:
        for i in range(40):
            bad = "Basic " + base64.b64encode(f"prom:wrong-{i}".encode()).decode()
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics",
                                       headers={"Authorization": bad},
                                       timeout=aiohttp.ClientTimeout(total=5)) as response:
                    key = f"wrong_password_{response.status}"
                    counts[key] = counts.get(key, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                counts["wrong_password_error"] = counts.get("wrong_password_error", 0) + 1

    async def malformed() -> None:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = await asyncio.wait_for(reader.read(12), 5)
                counts[f"malformed_{answer[9:12].decode() or 'eof'}"] = counts.get(
                    f"malformed_{answer[9:12].decode() or 'eof'}", 0) + 1
                writer.transport.abort()
            except (OSError, TimeoutError):
                counts["malformed_error"] = counts.get("malformed_error", 0) + 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(idle_connections(), slowloris(),
                             *(wrong_passwords(session) for _ in range(5)), malformed())


# -- the run ----------------------------------------------------------------------------
def describe(sample: Sample) -> str:
    return (f"RSS {sample.rss_mib:7.1f} MiB  fds {sample.fds:4d}  "
            f"scrape {sample.scrape * 1000:7.1f} ms  status {sample.status * 1000:6.1f} ms  "
            f"/metrics {sample.size // 1024} KiB")


def window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.at < end]


def summary(samples: list[Sample]) -> Sample:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    return Sample(samples[-1].at, med([s.rss_mib for s in samples]),
                  int(med([s.fds for s in samples])), med([s.scrape for s in samples]),
                  med([s.status for s in samples]), int(med([s.size for s in samples])))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds (default 3600)")
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--no-hostile-clients", action="store_true")
    args = parser.parse_args()
    # The targets' own errors (a probe that hangs up on the endless body) are expected.
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_tls)

    runner = web.AppRunner(healthy_app(), access_log=None)
    await runner.setup()
    plain = web.TCPSite(runner, "127.0.0.1", 0)
    secure = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await plain.start()
    await secure.start()
    raw = {kind: await raw_server(kind)
           for kind in ("silent", "close", "reset", "garbage", "bighead", "echo")}
    ports = {"http": plain.port, "https": secure.port, "refused": free_port(),
             **{kind: port_of(server) for kind, server in raw.items()}}
    listen = free_port()
    config = tmp / "soak.yaml"
    write_config(config, args.probes, ports, str(ca_file), listen)
    log_path = tmp / "daemon.log"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or "?"
    print(f"soak: {args.probes} probes every {INTERVAL} (timeout {TIMEOUT}), half hostile; "
          f"/metrics every {SCRAPE_EVERY:g}s; hostile clients every {HOSTILE_EVERY:g}s: "
          f"{not args.no_hostile_clients}; {args.duration:g}s; commit {commit}; "
          f"load {os.getloadavg()[0]:.2f}; log {log_path}", flush=True)

    with log_path.open("wb") as log_file:
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "-c", str(config),
            stdout=log_file, stderr=log_file)
    soak = Soak(daemon.pid, f"http://127.0.0.1:{listen}",
                "Basic " + base64.b64encode(f"prom:{PASSWORD}".encode()).decode())
    started = time.monotonic()
    hostile_tasks: set[asyncio.Task[None]] = set()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # wait for the server (bounded: 10 s)
                try:
                    async with session.get(f"{soak.base}/-/ready",
                                           headers={"Authorization": soak.auth}) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            next_scrape = next_hostile = next_report = time.monotonic()
            next_hostile += WARMUP
            next_report += REPORT_EVERY
            while time.monotonic() - started < args.duration:
                now = time.monotonic()
                if now >= next_scrape:
                    next_scrape += SCRAPE_EVERY
                    await soak.scrape(session, started)
                if now >= next_hostile and not args.no_hostile_clients:
                    next_hostile += HOSTILE_EVERY
                    task = asyncio.create_task(hostile_round(listen, soak.hostile))
                    hostile_tasks.add(task)
                    task.add_done_callback(hostile_tasks.discard)
                if now >= next_report and soak.samples:
                    next_report += REPORT_EVERY
                    print(f"  t={now - started:6.0f}s  {describe(soak.samples[-1])}", flush=True)
                if daemon.returncode is not None:
                    print("the daemon exited!", flush=True)
                    break
                await asyncio.sleep(0.5)
            await asyncio.gather(*hostile_tasks, return_exceptions=True)
            headers = {"Authorization": soak.auth}
            async with session.get(f"{soak.base}/metrics", headers=headers) as response:
                final = await response.text()
    finally:
        stop_started = time.monotonic()
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(daemon.wait(), 10)
        except TimeoutError:
            daemon.kill()
            code = await daemon.wait()
        stopped = time.monotonic() - stop_started
        for server in raw.values():
            server.close()
        await runner.cleanup()

    first = window(soak.samples, WARMUP, WARMUP + 300) or soak.samples[:5]
    last = window(soak.samples, args.duration - 300, args.duration) or soak.samples[-5:]
    begin, end = summary(first), summary(last)
    print(f"start (median, {len(first)} scrapes from t={WARMUP:g}s): {describe(begin)}")
    print(f"end   (median, {len(last)} scrapes, last 5 min):  {describe(end)}")
    print(f"end/start: RSS {end.rss_mib / begin.rss_mib:.2f}  fds {end.fds / begin.fds:.2f}  "
          f"scrape {end.scrape / begin.scrape:.2f}  status {end.status / begin.status:.2f}")
    slowest = max(soak.samples, key=lambda s: s.scrape)
    times = sorted(s.scrape for s in soak.samples)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"scrapes: {len(soak.samples)} ok, {soak.scrape_failures} failed; slowest "
          f"{slowest.scrape * 1000:.1f} ms at t={slowest.at:.0f}s; p99 {p99 * 1000:.1f} ms")
    reasons: dict[str, float] = {}
    for match in re.finditer(r'monitor_probe_failures_total\{[^}]*reason="([a-z_]+)"[^}]*\} '
                             r"([0-9.e+]+)", final):
        reasons[match[1]] = reasons.get(match[1], 0) + float(match[2])
    runs = sum(float(m[1]) for m in re.finditer(r"monitor_probe_runs_total\{[^}]*\} ([0-9.e+]+)",
                                                final))
    skipped = sum(float(m[1]) for m in re.finditer(
        r"monitor_probe_skipped_total\{[^}]*\} ([0-9.e+]+)", final))
    print(f"runs {runs:.0f}, skipped {skipped:.0f}; failures by reason: "
          + ", ".join(f"{k} {v:.0f}" for k, v in sorted(reasons.items()) if v))
    print(f"hostile clients: {dict(sorted(soak.hostile.items()))}")
    log_text = log_path.read_bytes()
    lines = log_text.count(b"\n")
    print(f"daemon log: {lines} lines, {len(log_text) / 1024:.0f} KiB, "
          f"{log_text.count(b'Traceback')} tracebacks, query secret shown "
          f"{log_text.count(b'soak-query-secret')} times; SIGTERM -> exit {code} in "
          f"{stopped:.2f}s")


if __name__ == "__main__":
    asyncio.run(main())
