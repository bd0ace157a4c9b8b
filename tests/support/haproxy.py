"""A real haproxy on 127.0.0.1 (TLS, trustme certificate) in front of aiohttp backends.

Layout started by :func:`haproxy_lb`::

    https://127.0.0.1:PORT  frontend main   -> roundrobin be-1, be-2, be-3
    https://127.0.0.2:PORT  frontend second -> be-4 (a second "address" of the name)

Every backend answers ``ok`` with ``x-served-by: be-N`` and a status the
test can switch (``backend.status = 503``). No health checks: haproxy
passes the backends' answers on, as a load balancer with a failing
backend that still passes its checks does. The certificate covers
``lb.test``, ``localhost``, 127.0.0.1 and 127.0.0.2; ``ca_file`` trusts it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web

HOSTNAME = "lb.test"
ADDRESSES = ("127.0.0.1", "127.0.0.2")
READY_SECONDS = 10.0


@dataclass
class Backend:
    name: str
    status: int = 200
    port: int = 0
    served: int = 0
    runner: web.AppRunner | None = field(default=None, repr=False)

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.served += 1
            return web.Response(status=self.status, text=f"{self.name}\n",
                                headers={"x-served-by": self.name})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Haproxy:
    port: int
    ca_file: Path
    pool: list[Backend]  # behind 127.0.0.1
    second: Backend  # behind 127.0.0.2
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/health"

    @property
    def named_url(self) -> str:
        return f"https://{HOSTNAME}:{self.port}/health"


def _free_port_on_both() -> int:
    """A port free on 127.0.0.1 and 127.0.0.2 alike (both frontends share it)."""
    for _ in range(20):
        with socket.socket() as first:
            first.bind((ADDRESSES[0], 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind((ADDRESSES[1], port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free on both loopback addresses")


def _config(port: int, pem: Path, pool: list[Backend], second: Backend) -> str:
    servers = "\n".join(f"    server {b.name} 127.0.0.1:{b.port}" for b in pool)
    return f"""\
global
    maxconn 512

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend main
    bind {ADDRESSES[0]}:{port} ssl crt {pem}
    default_backend pool

frontend second
    bind {ADDRESSES[1]}:{port} ssl crt {pem}
    default_backend second

backend pool
    balance roundrobin
{servers}

backend second
    server {second.name} 127.0.0.1:{second.port}
"""


async def _ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_SECONDS
    waiting = list(ADDRESSES)
    while waiting:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited ({process.returncode}): {log.read_text()}")
        try:
            _, writer = await asyncio.open_connection(waiting[0], port)
        except OSError:
            if loop.time() > deadline:
                raise RuntimeError(f"haproxy not listening on {waiting[0]}:{port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.transport.abort()
        waiting.pop(0)


@asynccontextmanager
async def haproxy_lb(tmp_path: Path) -> AsyncIterator[Haproxy]:
    """Start three pool backends, one second-address backend and haproxy; stop all."""
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy)")
    ca = trustme.CA()
    cert = ca.issue_cert(HOSTNAME, "localhost", *ADDRESSES)
    pem = tmp_path / "haproxy.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    pool = [Backend(f"be-{n}") for n in (1, 2, 3)]
    second = Backend("be-4")
    started: list[Backend] = []
    process: subprocess.Popen[bytes] | None = None
    log = tmp_path / "haproxy.log"
    try:
        for backend in [*pool, second]:
            await backend.start()
            started.append(backend)
        port = _free_port_on_both()
        config = tmp_path / "haproxy.cfg"
        config.write_text(_config(port, pem, pool, second))
        with log.open("wb") as out:
            process = subprocess.Popen([binary, "-db", "-f", str(config)],
                                       stdout=out, stderr=subprocess.STDOUT)
        await _ready(port, process, log)
        yield Haproxy(port=port, ca_file=ca_file, pool=pool, second=second, log=log)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for backend in started:
            await backend.stop()
