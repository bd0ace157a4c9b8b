"""The http probe against a real nginx with `gzip on`: it offers gzip, nginx compresses,
the probe decodes nginx's gzip (chunked on the wire) and checks the decoded body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.nginx import serve_nginx
from tests.unit.net.test_compression import bomb
from tests.unit.probes.test_http import probe

pytestmark = pytest.mark.external  # nginx

STATUS = {"status": "ok", "service": "backend",
          "checks": [{"name": f"check-{n}", "ok": True} for n in range(300)]}


def gzip_site(port: int, root: Path) -> str:
    (root / "health.json").write_text(json.dumps(STATUS))
    # gzip_static serves bomb.json.gz as is, with Content-Encoding: gzip.
    (root / "bomb.json.gz").write_bytes(bomb(64 * 1024 * 1024))
    (root / "bomb.json").write_text("{}")
    return f"""\
    types {{ application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        gzip on;
        gzip_types application/json;
        gzip_min_length 256;
        gzip_vary on;
        add_header X-Served-By nginx-gzip-test;
        location = /bomb.json {{ gzip_static on; }}
    }}
"""


async def test_the_probe_decodes_nginx_gzip(tmp_path: Path) -> None:
    """nginx compresses for the probe's Accept-Encoding; JSON, regex and header checks pass."""
    async with serve_nginx(tmp_path, gzip_site) as nginx:
        result = await probe(nginx.url + "/health.json", expect={
            "headers": {"Content-Encoding": "^gzip$", "vary": "Accept-Encoding",
                        "x-served-by": "^nginx-gzip-test$"},
            "headers_absent": ["Content-Length"],  # nginx streams gzip chunked
            "body_regex": ['"check-299"', '"service": "backend"'],
            "json": {"$.status": "ok", "$.checks[299].ok": True},
        })
        log = nginx.log_lines()
    assert result.ok, result.detail
    decoded = len(json.dumps(STATUS))
    assert result.facts["content_encoding"] == "gzip"
    assert result.facts["body_bytes"] == decoded
    assert result.facts["body_wire_bytes"] < decoded / 5
    request, protocol, status, sent, accept_encoding, ratio = log[-1]
    assert (request, protocol, status) == ("GET /health.json HTTP/1.1", "HTTP/1.1", "200")
    assert accept_encoding == "gzip, deflate"
    assert ratio != "-" and float(ratio) > 5
    assert int(sent) < decoded / 5


async def test_accept_encoding_identity_gets_the_plain_body(tmp_path: Path) -> None:
    """With the config's own Accept-Encoding: identity nginx does not compress."""
    async with serve_nginx(tmp_path, gzip_site) as nginx:
        result = await probe(nginx.url + "/health.json",
                             headers={"Accept-Encoding": "identity"},
                             expect={"json": {"$.status": "ok"},
                                     "headers_absent": ["content-encoding"]})
        log = nginx.log_lines()
    assert result.ok, result.detail
    assert result.facts["body_wire_bytes"] == result.facts["body_bytes"]
    assert log[-1][4:] == ["identity", "-"]


async def test_the_cap_applies_to_what_nginx_sent_decoded(tmp_path: Path) -> None:
    """A body whose gzip fits max_body_bytes but whose decoded size does not fails."""
    decoded = len(json.dumps(STATUS))
    async with serve_nginx(tmp_path, gzip_site) as nginx:
        result = await probe(nginx.url + "/health.json", max_body_bytes=decoded // 2)
        sent = int(nginx.log_lines()[-1][3])
    assert sent < decoded // 2
    assert result.reason == "assertion"
    assert "once decoded (gzip" in result.detail


async def test_a_gzip_bomb_from_nginx_fails_with_assertion(tmp_path: Path) -> None:
    """nginx serving 64 KiB of gzip that inflates to 64 MiB: assertion, not 64 MiB in memory."""
    async with serve_nginx(tmp_path, gzip_site) as nginx:
        result = await probe(nginx.url + "/bomb.json")
        log = nginx.log_lines()
    assert result.reason == "assertion"
    assert "larger than max_body_bytes (1048576 bytes) once decoded (gzip" in result.detail
    assert int(log[-1][3]) < 128 * 1024
