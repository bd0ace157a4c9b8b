"""A real tinyproxy on 127.0.0.1, started from a temporary config, for tests.

:func:`serve_tinyproxy` writes ``tinyproxy.conf`` into the test's temporary
directory (``Listen``/``Allow`` 127.0.0.1, a free ``Port``, its log there),
runs ``tinyproxy -d -c FILE`` in the foreground and waits until the port
accepts. ``connect_ports`` are the ports CONNECT may reach (tinyproxy
answers 403 for others); ``basic_auth`` makes it demand credentials (407).
The log (``LogLevel Connect``) shows every CONNECT and request it handles.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_SECONDS = 10.0


@dataclass
class Tinyproxy:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_tinyproxy(tmp_path: Path, *, connect_ports: Sequence[int] = (),
                    basic_auth: tuple[str, str] | None = None) -> Iterator[Tinyproxy]:
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.skip("tinyproxy is not installed (Debian: apt-get install tinyproxy)")
    tmp = tmp_path / f"tinyproxy-{len(list(tmp_path.glob('tinyproxy-*')))}"
    tmp.mkdir(parents=True)
    port = free_port()
    log = tmp / "tinyproxy.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Allow 127.0.0.1",
        "Timeout 30",
        "MaxClients 20",
        f"LogFile \"{log}\"",
        "LogLevel Connect",
        "DisableViaHeader Yes",
    ]
    # Run as root, it would switch to a user who cannot write the test's directory.
    if os.geteuid() == 0:
        lines += ["User root", "Group root"]
    lines += [f"ConnectPort {p}" for p in connect_ports]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    config = tmp / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n")
    with (tmp / "stderr.log").open("wb") as out:
        process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tinyproxy exited ({process.returncode}): "
                                   f"{(tmp / 'stderr.log').read_text()}{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy not listening on 127.0.0.1:{port}") \
                        from None
                time.sleep(0.05)
        yield Tinyproxy(port=port, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
