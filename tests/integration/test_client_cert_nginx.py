"""Client certificates (``tls: {cert_file, key_file}``) against a real nginx that
verifies clients (``ssl_verify_client on``), for every kind that speaks TLS here."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from monitor.net import tlsctx
from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Result
from monitor.redact import Redactor
from monitor.runner import run_once

pytestmark = [pytest.mark.external,
              pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")]
PROBE_CONFIG = PROBE_KINDS  # one probe mapping -> its kind's model


@dataclass
class Nginx:
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    stranger_cert: Path
    stranger_key: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    root = tmp_path_factory.mktemp("nginx")
    ca, stranger_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(root / "server.pem"))
    for name, issuer in (("client", ca), ("stranger", stranger_ca)):
        leaf = issuer.issue_cert(f"{name}.monitor.test")
        leaf.cert_chain_pems[0].write_to_path(str(root / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(root / f"{name}.key"))
    port = free_port()
    (root / "nginx.conf").write_text(f"""
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {root}/server.pem;
    ssl_certificate_key {root}/server.pem;
    ssl_client_certificate {root}/ca.pem;
    ssl_verify_client on;
    location / {{ return 200 "client $ssl_client_verify\\n"; }}
  }}
}}
""")
    process = subprocess.Popen(["nginx", "-p", str(root), "-c", str(root / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(process.stderr.read().decode()  # type: ignore[union-attr]
                                       ) from None
                time.sleep(0.05)  # waiting for nginx to listen, not measuring anything
        yield Nginx(port, root / "ca.pem", root / "client.pem", root / "client.key",
                    root / "stranger.pem", root / "stranger.key")
    finally:
        process.terminate()
        process.wait(10)


async def run(config: dict[str, Any]) -> Result:
    cfg = PROBE_CONFIG.validate({"interval": "30s", "timeout": "3s", **config}, {})
    probe = build_probe(cfg)
    return await run_once(probe, redactor=Redactor(), debug=True)


def tls(nginx: Nginx, who: str | None) -> dict[str, str]:
    options = {"ca_file": str(nginx.ca_file)}
    if who == "client":
        options |= {"cert_file": str(nginx.cert_file), "key_file": str(nginx.key_file)}
    elif who == "stranger":
        options |= {"cert_file": str(nginx.stranger_cert), "key_file": str(nginx.stranger_key)}
    return options


def kinds(nginx: Nginx, who: str | None) -> dict[str, dict[str, Any]]:
    url = f"https://127.0.0.1:{nginx.port}/"
    options = tls(nginx, who)
    return {
        "http": {"name": "h", "kind": "http", "url": url, "tls": options,
                 "expect": {"body_regex": "client SUCCESS"}},
        "lb": {"name": "l", "kind": "lb", "url": url, "tls": options, "requests": 2},
        "burst": {"name": "b", "kind": "burst", "url": url, "tls": options, "steps": [2],
                  "interval": "5m", "step_timeout": "1s", "slow_threshold": "900ms"},
        "load": {"name": "o", "kind": "load", "url": url, "tls": options, "rate": 4,
                 "duration": "1s", "request_timeout": "1s", "interval": "10m",
                 "max_error_ratio": 0},
        "journey": {"name": "j", "kind": "journey", "steps": [
            {"name": "get", "http": {"url": url, "tls": options,
                                     "expect": {"body_regex": "client SUCCESS"}}}]},
    }


@pytest.mark.parametrize("kind", ["http", "lb", "load", "burst", "journey"])
async def test_with_the_client_certificate_nginx_answers(nginx: Nginx, kind: str) -> None:
    result = await run(kinds(nginx, "client")[kind])
    assert result.ok, result.detail


@pytest.mark.parametrize("kind", ["http", "lb", "load", "burst", "journey"])
@pytest.mark.parametrize("who", [None, "stranger"])
async def test_without_a_trusted_certificate_nginx_refuses(nginx: Nginx, kind: str,
                                                           who: str | None) -> None:
    """nginx answers 400 ("No required SSL certificate was sent" / "The SSL certificate
    error") when the client has no certificate it trusts."""
    result = await run(kinds(nginx, who)[kind])
    assert (result.ok, result.reason) == (False, "http_status"), result.detail


async def test_tls_kind_presents_the_certificate(nginx: Nginx) -> None:
    ok = await run({"name": "t", "kind": "tls", "target": f"127.0.0.1:{nginx.port}",
                    "tls": tls(nginx, "client"), "min_days_left": 1})
    assert ok.ok, ok.detail


async def test_a_replaced_client_certificate_is_used_at_the_next_run(nginx: Nginx,
                                                                     tmp_path: Path) -> None:
    """The context cache keys on the files' mtimes: a rotated certificate is picked up."""
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    cert.write_bytes(nginx.stranger_cert.read_bytes())
    key.write_bytes(nginx.stranger_key.read_bytes())
    config = {"name": "h", "kind": "http", "url": f"https://127.0.0.1:{nginx.port}/",
              "tls": {"ca_file": str(nginx.ca_file), "cert_file": str(cert),
                      "key_file": str(key)}}
    assert (await run(config)).reason == "http_status"
    await asyncio.sleep(0.01)  # a distinct mtime on coarse clocks; not a measurement
    cert.write_bytes(nginx.cert_file.read_bytes())
    key.write_bytes(nginx.key_file.read_bytes())
    assert (await run(config)).ok
    tlsctx.clear()
