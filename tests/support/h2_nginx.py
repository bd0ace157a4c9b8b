"""nginx on TLS with or without `http2`, and a run helper, for the HTTP/2 and proxy tests.

:func:`h2_nginx` serves ``/health.json`` (gzip on), ``/old`` (302 to it) and
``/upload`` (POST) on ``listen 127.0.0.1:PORT ssl http2`` (or without http2:
an http/1.1-only server) with a certificate from :func:`make_certs`;
the access log (tests/support/nginx.py) shows ``$server_protocol``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trustme

from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Result
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support.nginx import Nginx, serve_nginx


def make_certs(root: Path) -> Path:
    """A throwaway CA (ca.pem) and a server certificate for 127.0.0.1 (server.pem)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(root / "server.pem"))
    return root


PROBE_CONFIG = PROBE_KINDS  # one probe mapping -> its kind's model
STATUS = {"status": "ok", "checks": [{"name": f"check-{n}", "ok": True} for n in range(400)]}


@asynccontextmanager
async def h2_nginx(tmp_path: Path, certs: Path, *, http2: bool = True,
                   extra: str = "") -> AsyncIterator[Nginx]:
    """nginx on TLS, with http2 on (or off: an http/1.1-only server)."""

    def site(port: int, root: Path) -> str:
        (root / "health.json").write_text(json.dumps(STATUS))
        return f"""\
    types {{ application/json json; }}
    client_max_body_size 8m;
    server {{
        listen 127.0.0.1:{port} ssl{' http2' if http2 else ''};
        ssl_certificate {certs / 'server.pem'};
        ssl_certificate_key {certs / 'server.pem'};
        root {root};
        gzip on;
        gzip_types application/json;
        add_header X-Served-By nginx-h2-test;
        location = /old {{ return 302 /health.json; }}
        location = /upload {{ return 200 "stored\\n"; }}
{extra}
    }}
"""

    async with serve_nginx(tmp_path, site) as nginx:
        yield nginx


def url(nginx: Nginx, path: str = "/health.json") -> str:
    return f"https://127.0.0.1:{nginx.port}{path}"


async def run(certs: Path, debug: bool = False, **fields: Any) -> Result:
    if fields["kind"] != "journey":
        fields.setdefault("tls", {"ca_file": str(certs / "ca.pem")})
    cfg = PROBE_CONFIG.validate({"name": "t", "interval": "30s", "timeout": "5s",
                                        **fields}, {})
    return await run_once(build_probe(cfg), redactor=Redactor(), debug=debug)


async def logged(nginx: Nginx, count: int) -> list[list[str]]:
    """The access log once it has ``count`` lines (nginx writes a line just after
    the response went out: the client may be done first), within 2 s."""
    for _ in range(200):
        lines = nginx.log_lines()
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.01)
    return nginx.log_lines()


async def protocols(nginx: Nginx, count: int) -> list[str]:
    return [line[1] for line in await logged(nginx, count)]
