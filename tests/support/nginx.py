"""A real nginx on 127.0.0.1, started from a temporary config, for tests.

:func:`serve_nginx` writes ``nginx.conf`` into the test's temporary directory
with everything nginx writes (pid, error and access logs, temp paths) kept
there, puts the ``http {}`` block the test gives inside it, runs nginx in the
foreground (``daemon off``, ``master_process off``: one process, stopped by
the test) and waits until the port accepts. The access log uses the format
``main`` below, so a test can read what nginx saw and did.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

READY_SECONDS = 10.0
# What a test can read back per request: protocol, status, bytes sent (the
# body on the wire), the Accept-Encoding it got and the gzip ratio (`-` when
# nginx did not compress).
LOG_FORMAT = ('$request|$server_protocol|$status|$body_bytes_sent|$http_accept_encoding|'
              '$gzip_ratio')


@dataclass
class Nginx:
    port: int
    root: Path  # the directory the test's http block may serve with `root`
    access_log: Path
    error_log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[list[str]]:
        """The access log, one list of LOG_FORMAT fields per request."""
        if not self.access_log.exists():
            return []
        return [line.split("|") for line in self.access_log.read_text().splitlines() if line]


def _config(tmp: Path, http_block: str) -> str:
    # Run as root (as in CI containers), workers would switch to `nobody`,
    # who cannot read the test's private temporary directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {tmp / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""\
{user}daemon off;
master_process off;
pid {tmp / 'nginx.pid'};
error_log {tmp / 'error.log'} info;
events {{ worker_connections 64; }}
http {{
    log_format main '{LOG_FORMAT}';
    access_log {tmp / 'access.log'} main;
{temp}
{http_block}
}}
"""


async def _ready(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_SECONDS
    while True:
        if process.poll() is not None:
            log = error_log.read_text() if error_log.exists() else ""
            raise RuntimeError(f"nginx exited ({process.returncode}): {log}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise RuntimeError(f"nginx not listening on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.transport.abort()
        return


@asynccontextmanager
async def serve_nginx(tmp_path: Path, http_block: Callable[[int, Path], str]
                      ) -> AsyncIterator[Nginx]:
    """Run nginx with ``http_block(port, root)`` inside its ``http {}``; stop it after.

    ``root`` is an empty directory for the files the test serves.
    """
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                       else None)
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    tmp = tmp_path / "nginx"
    root = tmp / "root"
    root.mkdir(parents=True)
    port = free_port()
    config = tmp / "nginx.conf"
    config.write_text(_config(tmp, http_block(port, root)))
    served = Nginx(port=port, root=root, access_log=tmp / "access.log",
                   error_log=tmp / "error.log")
    with (tmp / "stderr.log").open("wb") as out:
        # -e: the startup error log too, before nginx reads the config's.
        process = subprocess.Popen([binary, "-p", str(tmp), "-e", str(served.error_log),
                                    "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        await _ready(port, process, served.error_log)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
