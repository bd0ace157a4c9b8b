"""Nobody without credentials can blind the daemon: each case of issue 13 against a real
`monitor run` (file-descriptor limits, signals, logs) or the real server in-process
(monitor.httpd with shortened timeouts, so a case takes a second, not ten).
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import signal
import socket
import ssl
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from structlog.testing import capture_logs

import monitor.daemon
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.demo.backends import Faults, backend_app
from monitor.httpd import GatedSite, start_server
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.net.connect import open_connection
from monitor.net.fetch import Request, fetch
from monitor.probes import PROBE_KINDS
from monitor.probes.base import ProbeFailure
from monitor.redact import Redactor
from monitor.server import make_app
from tests.support.daemon_process import reasons, run_backend, run_daemon, sample
from tests.support.http_servers import Certs, Served, serve_app
from tests.support.ports import free_port

PASSWORD = "right-password"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()  # ~50 ms, as deployed


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD = basic("prom", PASSWORD)


@pytest.fixture
async def backend() -> AsyncIterator[Served]:
    async with serve_app(backend_app("backend-a", Faults())) as served:
        yield served


@pytest.fixture
async def backend_process() -> AsyncIterator[Served]:
    async with run_backend() as port:
        yield Served(port=port, scheme="http")


def write_config(path: Path, backend: Served, port: int, *, probes: int = 10,
                 interval: str = "1s", timeout: str = "500ms", auth: bool = True,
                 host: str = "127.0.0.1") -> Path:
    users = f", basic_auth_users: {{prom: '{HASH}'}}" if auth else ""
    lines = [f"global: {{interval: {interval}, timeout: {timeout}}}",
             f"server: {{listen: '127.0.0.1:{port}'{users}}}", "probes:"]
    for index in range(probes):
        where = "localhost" if index % 2 else host
        lines.append(f"  - {{name: p{index}, kind: http, "
                     f"url: 'http://{where}:{backend.port}/health'}}")
    path.write_text("\n".join(lines) + "\n")
    return path


async def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections that never send a byte (bounded: 2 s each)."""
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 2)
        except (OSError, TimeoutError):
            sock.close()
            continue
        socks.append(sock)
    return socks


async def raw(port: int, data: bytes, *, read_timeout: float = 5, tls: ssl.SSLContext | None
              = None) -> bytes:
    """Send ``data`` on a fresh connection; what comes back until EOF (or b"" on a reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_timeout)
    except ConnectionResetError:
        return b""
    finally:
        writer.transport.abort()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# -- idle connections, a lowered fd limit ------------------------------------------------
async def test_idle_connections_cannot_exhaust_a_daemon_at_1024_fds(
        tmp_path: Path, backend_process: Served) -> None:
    """1100 idle connections to a daemon limited to 1024 fds: scrapes answer, probes keep
    succeeding (no connect_refused "Too many open files"), the log stays a few lines."""
    port = free_port()
    config = write_config(tmp_path / "m.yaml", backend_process, port, timeout="900ms")
    async with run_daemon(config, port, nofile=1024, auth=GOOD) as daemon, \
            aiohttp.ClientSession() as session:
        before = await daemon.metrics(session)
        socks = await open_idle(port, 1100)
        try:
            assert len(socks) == 1100  # every one was accepted by the kernel at least
            await asyncio.sleep(0.5)  # closing the ones evicted takes a loop iteration
            fds = daemon.open_fds()
            for _ in range(5):  # Prometheus' default timeout: 10 s
                await daemon.metrics(session)
                await asyncio.sleep(0.5)
        finally:
            for sock in socks:
                sock.close()
        after = await daemon.metrics(session)
        log = daemon.log()
    assert fds < 128 + 40  # the cap (1024 / 8) plus the daemon's own
    assert reasons(after) == {}
    runs = "monitor_probe_runs_total"
    assert sample(after, runs, result="success") > sample(before, runs, result="success") + 10
    assert "out of system resource" not in log
    assert "Traceback" not in log
    assert len(log.splitlines()) < 20, log


async def test_slowloris_and_silent_connections_are_cut_at_the_header_timeout() -> None:
    """Heads trickled a byte at a time and connections that say nothing are closed one
    header timeout after they open, while a normal request is answered."""
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    runner, site = await start_server(app, "127.0.0.1", 0, ssl_context=None,
                                      max_connections=64, header_timeout=1.0)
    try:
        silent = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(10)]
        slow = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(10)]

        async def trickle(writer: asyncio.StreamWriter) -> None:
            for char in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:  # 8 s at most
                if writer.is_closing():
                    return
                writer.write(bytes([char]))
                await asyncio.sleep(0.2)

        trickles = [asyncio.create_task(trickle(w)) for _, w in slow]
        answer = await raw(site.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        cut = await asyncio.gather(*(closed_within(r, 4) for r, _ in silent + slow))
        for task in trickles:
            task.cancel()
        await asyncio.gather(*trickles, return_exceptions=True)
        for _, writer in silent + slow:
            writer.transport.abort()
        assert all(cut)
    finally:
        await runner.cleanup()


async def _served_gate(handler: Callable[[web.Request], Awaitable[web.StreamResponse]], *,
                       max_connections: int, request_timeout: float = 30.0,
                       tls: ssl.SSLContext | None = None,
                       ) -> tuple[web.AppRunner, GatedSite]:
    app = web.Application()
    app.router.add_get("/", handler)
    return await start_server(app, "127.0.0.1", 0, ssl_context=tls,
                              max_connections=max_connections, header_timeout=2.0,
                              request_timeout=request_timeout)


async def test_cap_closes_the_longest_idle_connection_and_refuses_only_when_all_are_busy(
        ) -> None:
    """At the cap a newcomer is served by closing the connection idle longest; when every
    connection is in a request, the newcomer gets a 503 at once (not a queue)."""
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.query.get("wait"):
            await release.wait()  # a request still in progress: its connection is busy
        return web.Response(text="done")

    runner, site = await _served_gate(handler, max_connections=4)
    try:
        idle = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(4)]
        answer = await raw(site.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        assert await closed_within(idle[0][0], 2)  # the oldest idle one made room
        for _, writer in idle:
            writer.transport.abort()
        await asyncio.sleep(0.1)

        async with aiohttp.ClientSession() as session:
            busy = [asyncio.create_task(session.get(f"http://127.0.0.1:{site.port}/?wait=1"))
                    for _ in range(4)]
            await asyncio.sleep(0.3)
            refused = await raw(site.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            release.set()
            responses = await asyncio.gather(*busy)
            assert [r.status for r in responses] == [200] * 4
            for response in responses:
                response.release()
        assert refused.startswith(b"HTTP/1.1 503"), refused
        assert b"Retry-After: 1" in refused
    finally:
        await runner.cleanup()


async def test_a_response_nobody_reads_is_cut_at_the_request_timeout() -> None:
    """A request whose answer is never read (or never ends) holds its connection at most
    the request timeout."""
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(10_000):  # bounded; each write blocks once the client stops reading
            await response.write(b"x" * 65536)
        return response

    runner, site = await _served_gate(endless, max_connections=8, request_timeout=1.0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(3.5)  # never read: the server's buffers fill, then it cuts
        received = 0
        try:
            while chunk := await asyncio.wait_for(reader.read(1 << 20), 2):
                received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        writer.transport.abort()
        assert received < 10_000 * 65536  # it ended before the handler could finish
        assert site._gate.open_connections == 0
    finally:
        await runner.cleanup()


async def test_tls_handshakes_are_bounded_and_count_against_the_cap(tmp_path: Path) -> None:
    """Over TLS: a connection that never starts its handshake is closed at the header
    timeout, and a flood of them cannot keep a real client out."""
    certs = Certs(tmp_path)

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    runner, site = await _served_gate(hello, max_connections=4,
                                      tls=certs.server_context("127.0.0.1"))
    try:
        silent = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(6)]
        answer = await raw(site.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                           tls=certs.client_context())
        assert answer.startswith(b"HTTP/1.1 200")
        cut = await asyncio.gather(*(closed_within(r, 4) for r, _ in silent))
        for _, writer in silent:
            writer.transport.abort()
        assert all(cut)
    finally:
        await runner.cleanup()


# -- authentication ----------------------------------------------------------------------
async def test_bad_logins_do_not_starve_dns_or_scrapes(tmp_path: Path,
                                                      backend_process: Served) -> None:
    """50 clients sending wrong passwords for 5 s: probes of a hostname never fail with
    dns, a gzip scrape with the right password answers, every wrong login gets 401 or 429."""
    port = free_port()
    # Timeouts long enough for a loaded test machine, far shorter than the wait behind
    # 50 bcrypt checks on a shared executor (seconds).
    config = write_config(tmp_path / "m.yaml", backend_process, port, host="localhost",
                          interval="2500ms", timeout="2s")
    statuses: dict[int, int] = {}
    async with run_daemon(config, port, auth=GOOD) as daemon, \
            aiohttp.ClientSession() as session:
        await daemon.metrics(session)  # the right password is verified once, then cached
        stop = time.monotonic() + 6

        async def wrong(index: int) -> None:
            for attempt in range(1000):  # bounded by the clock above, and by count
                if time.monotonic() > stop:
                    return
                header = basic("prom" if attempt % 2 else f"user{index}", f"bad-{attempt}")
                async with session.get(f"{daemon.base}/metrics", headers={
                        "Authorization": header}) as response:
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        flood = [asyncio.create_task(wrong(i)) for i in range(50)]
        scrapes = []
        for _ in range(4):
            started = time.monotonic()
            await daemon.metrics(session)  # fails the test past 10 s
            scrapes.append(time.monotonic() - started)
            await asyncio.sleep(0.5)
        await asyncio.gather(*flood)
        after = await daemon.metrics(session)
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.get(401, 0) > 0
    assert "dns" not in reasons(after)
    assert "error" not in reasons(after)


async def test_wrong_user_and_wrong_password_take_the_same_time(tmp_path: Path) -> None:
    """An unknown user is checked against a dummy hash of the same cost: the median answer
    times of a wrong user and a wrong password are within a factor of 3 (a same-run ratio;
    without the dummy it is about 100)."""
    daemon = await _daemon(tmp_path)
    runner, site = await start_server(make_app(daemon), "127.0.0.1", 0, ssl_context=None,
                                      max_connections=16)
    try:
        async def median(header: str) -> float:
            times = []
            for _ in range(7):
                started = time.perf_counter()
                answer = await raw(site.port, f"GET /-/healthy HTTP/1.1\r\nHost: x\r\n"
                                   f"Authorization: {header}\r\nConnection: close\r\n\r\n"
                                   .encode())
                times.append(time.perf_counter() - started)
                assert answer.startswith(b"HTTP/1.1 401"), answer[:40]
            return statistics.median(times)

        unknown = await median(basic("nobody", "x"))
        wrong = await median(basic("prom", "x"))
        assert 1 / 3 < unknown / wrong < 3, (unknown, wrong)
    finally:
        await runner.cleanup()
        await daemon.stop()


@pytest.mark.parametrize("header", [
    basic("prom", "a" * 73),  # over bcrypt's 72 bytes: was a 500 with a traceback
    "Basic %%%not-base64",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b"prom:\xff\xfe").decode(),
    "Bearer abc",
    "Basic",
    "",
], ids=["password-over-72-bytes", "bad-base64", "no-colon", "not-utf8", "bearer",
        "empty-basic", "empty"])
async def test_malformed_credentials_get_401(tmp_path: Path, header: str) -> None:
    """Malformed or oversized credentials are refused with 401, never a 500."""
    daemon = await _daemon(tmp_path)
    runner, site = await start_server(make_app(daemon), "127.0.0.1", 0, ssl_context=None,
                                      max_connections=16)
    try:
        answer = await raw(site.port, f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: "
                           f"{header}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        assert answer.startswith(b"HTTP/1.1 401"), answer[:60]
        good = await raw(site.port, f"GET /-/healthy HTTP/1.1\r\nHost: x\r\nAuthorization: "
                         f"{GOOD}\r\nConnection: close\r\n\r\n".encode())
        assert good.startswith(b"HTTP/1.1 200")
    finally:
        await runner.cleanup()
        await daemon.stop()


async def test_bodies_over_the_route_limit_get_413_unread(tmp_path: Path) -> None:
    """A 100 MB POST or a chunked GET is refused with 413 before anything reads it."""
    daemon = await _daemon(tmp_path)
    runner, site = await start_server(make_app(daemon), "127.0.0.1", 0, ssl_context=None,
                                      max_connections=16)
    try:
        big = await raw(site.port, f"POST /-/reload HTTP/1.1\r\nHost: x\r\nAuthorization: "
                        f"{GOOD}\r\nContent-Length: 100000000\r\n\r\npartial".encode())
        chunked = await raw(site.port, f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: "
                            f"{GOOD}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                            .encode())
        assert big.startswith(b"HTTP/1.1 413"), big[:60]
        assert chunked.startswith(b"HTTP/1.1 413"), chunked[:60]
    finally:
        await runner.cleanup()
        await daemon.stop()


async def _daemon(tmp_path: Path) -> Daemon:
    path = tmp_path / "m.yaml"
    path.write_text(f"server: {{listen: '127.0.0.1:0', basic_auth_users: {{prom: '{HASH}'}}}}\n"
                    "probes: []\n")
    config = load_config(path, kinds=PROBE_KINDS)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()),
                    redactor=Redactor(config.secrets))
    await daemon.start()
    return daemon


# -- logs, signals, reloads --------------------------------------------------------------
async def test_malformed_requests_get_400_and_one_log_line(tmp_path: Path,
                                                          backend: Served) -> None:
    """1000 `GET /\\xff` before authentication: every one answered 400, one warning in the
    log, no traceback (it was 1000 ERROR lines with tracebacks, 636 KB)."""
    port = free_port()
    config = write_config(tmp_path / "m.yaml", backend, port, probes=1)
    async with run_daemon(config, port, auth=GOOD) as daemon:
        slots = asyncio.Semaphore(20)

        async def bad() -> bytes:
            async with slots:
                return await raw(port, b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n")

        answers = await asyncio.gather(*(bad() for _ in range(1000)))
        log = daemon.log()
    # aiohttp answers in HTTP/1.0 when it could not read the request line's version.
    assert {a[:12] for a in answers} <= {b"HTTP/1.1 400", b"HTTP/1.0 400"}, answers[:3]
    assert log.count("malformed request") == 1, log[-2000:]
    assert "Traceback" not in log
    assert len(log) < 5000


async def test_sigterm_exits_0_within_3s_whatever_clients_do(tmp_path: Path,
                                                            backend: Served) -> None:
    """Half-sent bodies, idle and slowloris connections, an unread scrape and logins in
    flight: SIGTERM still ends the daemon with 0 within 3 s (Cloud Run allows 10)."""
    port = free_port()
    config = write_config(tmp_path / "m.yaml", backend, port, interval="5s", timeout="4s")
    async with run_daemon(config, port, auth=GOOD) as daemon:
        writers: list[asyncio.StreamWriter] = []

        async def send(data: bytes) -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await writer.drain()
            writers.append(writer)

        await send(f"POST /-/reload HTTP/1.1\r\nHost: x\r\nAuthorization: {GOOD}\r\n"
                   "Content-Length: 1000\r\n\r\nonly-the-start".encode())
        await send(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nhalf")
        await send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaa")  # a head never ended
        await send(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {GOOD}\r\n\r\n"
                   .encode() * 20)  # scrapes whose answers are never read
        for index in range(10):
            await send(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: "
                       f"{basic('prom', f'wrong-{index}')}\r\n\r\n".encode())
        socks = await open_idle(port, 50)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        code = await daemon.stop(timeout=3)
        took = time.monotonic() - started
        for writer in writers:
            writer.transport.abort()
        for sock in socks:
            sock.close()
    assert code == 0, daemon.log()[-2000:]
    assert took < 3


async def test_sighup_with_a_crashing_file_keeps_running_and_reports_the_failure(
        tmp_path: Path, backend: Served) -> None:
    """SIGHUP with `kind: [x]` (was "Task exception was never retrieved" and the gauge at
    1): the gauge goes to 0, probes keep running, POST /-/reload answers 400 with it."""
    port = free_port()
    config = write_config(tmp_path / "m.yaml", backend, port, probes=2)
    good = config.read_text()
    async with run_daemon(config, port, auth=GOOD) as daemon, \
            aiohttp.ClientSession() as session:
        config.write_text(good + "  - {name: bad, kind: [x], url: 'http://127.0.0.1/'}\n")
        daemon.process.send_signal(signal.SIGHUP)
        text = ""
        for _ in range(50):  # bounded: 5 s
            text = await daemon.metrics(session)
            if "monitor_config_last_reload_success 0.0" in text:
                break
            await asyncio.sleep(0.1)
        assert "monitor_config_last_reload_success 0.0" in text
        runs = sample(text, "monitor_probe_runs_total")
        async with session.post(f"{daemon.base}/-/reload", headers=daemon.headers) as response:
            assert response.status == 400
            body = await response.json()
        await asyncio.sleep(1.5)
        later = await daemon.metrics(session)
        log = daemon.log()
    assert body["status"] == "error"
    assert any("unknown kind" in p for p in body["problems"]), body
    assert sample(later, "monitor_probe_runs_total") > runs
    assert "Task exception was never retrieved" not in log
    assert "Traceback" not in log
    assert "config reload failed" in log


async def test_reload_is_all_or_nothing(tmp_path: Path, backend: Served,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that renames ten probes and adds one at `interval: 99999999999d` (was
    applied by half: ten removed, ten never added) keeps the running config whole; so does
    a reload where one new probe fails to build."""
    path = write_config(tmp_path / "m.yaml", backend, 0, auth=False)
    config = load_config(path, kinds=PROBE_KINDS)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()), redactor=Redactor())
    await daemon.start()
    try:
        before = set(daemon.scheduler.job_names())
        probes = dict(daemon.probes)
        text = path.read_text()
        path.write_text(text.replace("name: p", "name: renamed-p")
                        + "  - {name: huge, kind: http, url: 'http://127.0.0.1/', "
                          "interval: 99999999999d}\n")
        problems = await daemon.reload()
        assert problems and "366d" in problems[0]
        assert set(daemon.scheduler.job_names()) == before
        assert daemon.probes == probes
        assert daemon.metrics.registry.get_sample_value(
            "monitor_config_last_reload_success") == 0

        real = monitor.daemon.build_probe

        def build(probe_config: object) -> object:
            if probe_config.name == "renamed-p7":  # type: ignore[attr-defined]
                raise RuntimeError("cannot build this one")
            return real(probe_config)

        monkeypatch.setattr(monitor.daemon, "build_probe", build)
        path.write_text(text.replace("name: p", "name: renamed-p"))
        problems = await daemon.reload()
        assert problems == ["probe 'renamed-p7': cannot be built: RuntimeError: cannot build "
                            "this one"]
        assert set(daemon.scheduler.job_names()) == before
        assert daemon.probes == probes
    finally:
        await daemon.stop()


async def test_status_json_of_a_failed_reload(tmp_path: Path, backend: Served) -> None:
    """POST /-/reload with a bad file: 400 and the problems, as JSON."""
    path = write_config(tmp_path / "m.yaml", backend, 0, auth=False, probes=1)
    config = load_config(path, kinds=PROBE_KINDS)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()), redactor=Redactor())
    await daemon.start()
    runner, site = await start_server(make_app(daemon), "127.0.0.1", 0, ssl_context=None,
                                      max_connections=16)
    try:
        path.write_text("probes: [{name: x, kind: [x]}]\n")
        answer = await raw(site.port, b"POST /-/reload HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert json.loads(body)["problems"]
    finally:
        await runner.cleanup()
        await daemon.stop()


# -- our own exhaustion ------------------------------------------------------------------
async def _check(config: Path, *args: str, nofile: int | None = None,
                 ) -> tuple[int | None, str, str]:
    """`monitor check` as a subprocess, optionally with a lowered fd limit."""
    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "check", "-c", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=limit,  # only setrlimit, in the child before exec
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


async def test_running_out_of_file_descriptors_is_error_not_the_targets_failure(
        tmp_path: Path) -> None:
    """With 64 fds, bursts of 80 connections (TCP echo and HTTP) run out of descriptors:
    the runs fail with `error` saying it is ours (it was `connect_refused`, blaming the
    target), no knee is reported, and the log says it once per kind."""
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        await asyncio.sleep(0.5)  # keep the connections open together (the condition)
        writer.write(data or b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = tmp_path / "m.yaml"
    path.write_text(f"""
probes:
  - {{name: echo, kind: burst, target: '127.0.0.1:{port}', steps: [80], payload_bytes: 16,
      step_timeout: 5s, interval: 5m}}
  - {{name: web, kind: burst, url: 'http://127.0.0.1:{port}/', steps: [80],
      step_timeout: 5s, interval: 5m}}
""")
    try:
        code, out, err = await _check(path, "--format", "json", nofile=64)
    finally:
        server.close()
    report = json.loads(out)
    for probe in report["probes"]:
        assert probe["last_reason"] == "error", probe
        assert "ours, not the target's: out of file descriptors (EMFILE" in \
            probe["last_detail"], probe
    assert code == 1
    assert err.count("the daemon itself is out of resources") <= 2, err
    assert "connect_refused" not in out


async def test_a_dns_lookup_that_never_got_a_thread_is_error(backend: Served) -> None:
    """Every thread of the default executor busy: a lookup that never started fails the
    run with `error` ("never started"), not `dns`."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blockers = [loop.run_in_executor(None, release.wait, 10) for _ in range(40)]
    try:
        with pytest.raises(ProbeFailure) as http:
            await fetch(Request(f"http://localhost:{backend.port}/health"), timeout=0.3)
        with pytest.raises(ProbeFailure) as tcp:
            await open_connection("localhost", backend.port, timeout=0.3, use_tls=False)
    finally:
        release.set()
        await asyncio.gather(*blockers)
    for failure in (http.value, tcp.value):
        assert failure.reason == "error"
        assert "never started" in failure.detail
    response = await fetch(Request(f"http://localhost:{backend.port}/health"), timeout=5)
    assert response.status == 200  # with threads free again, the same lookup works


# -- secrets in URLs ---------------------------------------------------------------------
SECRETS = {"access_token": "AT-secret-1", "api_key": "AK-secret-2", "key": "K-secret-3",
           "sig": "S-secret-4", "X-Amz-Signature": "AMZ-secret-5",
           "X-Goog-Signature": "GOOG-secret-6"}


async def test_query_values_are_masked_by_value_unless_public(tmp_path: Path) -> None:
    """`check --debug` with access_token, api_key, key, sig, X-Amz-Signature and
    X-Goog-Signature in the URL (all leaked before), a server echoing them in its answer,
    and a redirect to a signed URL: none of the values is shown; `page`, marked public, is."""
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/echo":
            return web.Response(status=503, text=f"echo: {request.query_string}")
        if request.path == "/signed":
            return web.Response(status=503, text="gone")
        raise web.HTTPFound("/signed?X-Goog-Signature=REDIRECT-secret-7&page=3")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with serve_app(app) as served:
        query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
        path = tmp_path / "m.yaml"
        path.write_text(f"""
probes:
  - name: signed
    kind: http
    url: '{served.url}/start?page=2&{query}'
    public_query: [page]
  - name: echoed
    kind: http
    url: '{served.url}/echo?page=2&{query}'
    public_query: [page]
""")
        code, out, err = await _check(path, "--debug")
    assert code == 1
    shown = out + err
    for value in [*SECRETS.values(), "REDIRECT-secret-7"]:
        assert value not in shown, value
    assert "/start?page=2&access_token=<redacted>" in shown
    assert "location: /signed?X-Goog-Signature=<redacted>&page=3" in shown


async def test_status_page_and_logs_never_show_query_values(tmp_path: Path) -> None:
    """A probe whose target echoes its query back: /api/status and the logs mask every
    value (by value: the config knows them), the target label keeps no query at all."""
    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=503, text=f"echo: {request.query_string}")

    app = web.Application()
    app.router.add_get("/echo", echo)
    async with serve_app(app) as served:
        query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
        path = tmp_path / "m.yaml"
        path.write_text(f"probes:\n  - {{name: echoed, kind: http, "
                        f"url: '{served.url}/echo?{query}', interval: 1m}}\n")
        config = load_config(path, kinds=PROBE_KINDS)
        daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()),
                        redactor=Redactor(config.secrets))
        await daemon.start()
        runner, site = await start_server(make_app(daemon), "127.0.0.1", 0, ssl_context=None,
                                          max_connections=16)
        try:
            with capture_logs() as logs:
                await daemon._run("echoed")
            async with aiohttp.ClientSession() as session:
                base = f"http://127.0.0.1:{site.port}"
                async with session.get(f"{base}/api/status") as response:
                    status = await response.text()
                async with session.get(f"{base}/metrics") as response:
                    metrics = await response.text()
        finally:
            await runner.cleanup()
            await daemon.stop()
    shown = status + metrics + json.dumps(logs, default=str)
    assert "echo: " in status  # the detail is there, with its values masked
    for value in SECRETS.values():
        assert value not in shown, value
    assert f'target="{served.url}/echo"' in metrics


async def test_a_storm_of_sighups_leaves_the_daemon_whole(tmp_path: Path,
                                                         backend: Served) -> None:
    """50 SIGHUPs in 5 s (held up before; keep it so): the daemon keeps serving, every
    reload succeeds, the probes are the same."""
    port = free_port()
    config = write_config(tmp_path / "m.yaml", backend, port, probes=4)
    async with run_daemon(config, port, auth=GOOD) as daemon, \
            aiohttp.ClientSession() as session:
        for _ in range(50):
            daemon.process.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.1)
        text = await daemon.metrics(session)
        code = await daemon.stop()
        log = daemon.log()
    assert code == 0
    assert "monitor_config_last_reload_success 1.0" in text
    assert sample(text, "monitor_probe_info") == 4
    assert "Traceback" not in log


async def test_every_kind_builds_at_start_and_on_reload(tmp_path: Path) -> None:
    """Start and reload build every kind's probe, schedule and TLS contexts (a burst's
    `steps` are numbers, a journey's are steps with their own TLS)."""
    certs = Certs(tmp_path)
    ca = certs.ca_file
    path = tmp_path / "m.yaml"
    path.write_text(f"""
global: {{interval: 1h}}
probes:
  - {{name: web, kind: http, url: 'https://127.0.0.1:1/', tls: {{ca_file: '{ca}'}}}}
  - {{name: echo, kind: burst, target: '127.0.0.1:1', steps: [2, 4], interval: 1h}}
  - {{name: port, kind: tcp, target: '127.0.0.1:1'}}
  - {{name: cert, kind: tls, target: '127.0.0.1:1', tls: {{ca_file: '{ca}'}}}}
  - {{name: pool, kind: lb, url: 'http://127.0.0.1:1/'}}
  - {{name: peak, kind: load, url: 'http://127.0.0.1:1/', rate: 1, duration: 2s}}
  - {{name: db, kind: sql, driver: postgres, host: 127.0.0.1, port: 1, user: u,
      tls: {{mode: verify-full, ca_file: '{ca}'}}}}
  - name: path
    kind: journey
    steps:
      - {{name: login, http: {{url: 'https://127.0.0.1:1/', tls: {{ca_file: '{ca}'}}}}}}
""")
    config = load_config(path, kinds=PROBE_KINDS)
    daemon = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()), redactor=Redactor())
    await daemon.start()
    try:
        assert set(daemon.scheduler.job_names()) == {p.name for p in config.probes}
        path.write_text(path.read_text().replace("interval: 1h}", "interval: 2h}"))
        assert await daemon.reload() == []
        assert len(daemon.scheduler.job_names()) == len(config.probes)
    finally:
        await daemon.stop()
