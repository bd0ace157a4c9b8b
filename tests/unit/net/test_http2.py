"""monitor/net/http2.py: the HTTP/2 exchange's failures against a server that
misbehaves on purpose (tests/support/h2server.py), and its request headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config.common import TLSOptions
from monitor.net.fetch import Request, fetch
from monitor.net.http2 import request_headers
from monitor.probes.base import ProbeFailure
from tests.support.h2server import BODY, serve_h2

H2 = ("h2", "http/1.1")


async def get(url: str, ca_file: Path, timeout: float = 5.0) -> object:
    return await fetch(Request(url), timeout=timeout, tls=TLSOptions(ca_file=ca_file),
                       http_versions=H2)


async def test_a_well_behaved_stream(tmp_path: Path) -> None:
    """The fake server's normal answer: HTTP/2 200 with its body; the request's
    pseudo-headers and headers arrive as sent, without connection headers."""
    async with serve_h2(tmp_path, "ok") as server:
        response = await fetch(Request(server.url, headers=[("X-Test", "1")]), timeout=5,
                               tls=TLSOptions(ca_file=server.ca_file), http_versions=H2)
    assert (response.http_version, response.status, response.body) == ("2", 200, BODY)
    sent = dict(server.requests[0])
    assert sent[":method"] == "GET" and sent[":scheme"] == "https"
    assert sent[":authority"] == f"127.0.0.1:{server.port}" and sent[":path"] == "/"
    assert sent["x-test"] == "1"
    assert "connection" not in sent and "host" not in sent


async def test_graceful_goaway_still_answers(tmp_path: Path) -> None:
    """GOAWAY(NO_ERROR) that has taken our stream: the response still completes."""
    async with serve_h2(tmp_path, "graceful-goaway") as server:
        response = await fetch(Request(server.url), timeout=5,
                               tls=TLSOptions(ca_file=server.ca_file), http_versions=H2)
    assert (response.status, response.body) == (200, BODY)


@pytest.mark.parametrize(("behaviour", "reason", "words"), [
    ("rst", "connection_reset", "reset the HTTP/2 stream (REFUSED_STREAM) before the "
                                "response head"),
    ("goaway", "connection_reset", "sent GOAWAY (ENHANCE_YOUR_CALM) without taking our "
                                   "stream, before the response head"),
    ("close-mid-body", "connection_reset", "closed by the peer after 10 body bytes, before "
                                           "END_STREAM"),
    ("wrong-length", "protocol", "invalid HTTP/2 from 127.0.0.1"),
    ("not-h2", "protocol", "invalid HTTP/2 from 127.0.0.1"),
], ids=["rst-stream", "goaway", "eof-mid-body", "content-length-mismatch", "http1-bytes"])
async def test_faults_are_classified(tmp_path: Path, behaviour: str, reason: str,
                                     words: str) -> None:
    """Each fault gets its reason and a detail that says what the server did."""
    async with serve_h2(tmp_path, behaviour) as server:
        with pytest.raises(ProbeFailure) as raised:
            await get(server.url, server.ca_file)
    assert raised.value.reason == reason, raised.value.detail
    assert words in raised.value.detail, raised.value.detail


async def test_silence_after_the_head_is_a_transfer_timeout(tmp_path: Path) -> None:
    """Headers, then nothing: timeout, in the transfer stage (ttfb was recorded)."""
    async with serve_h2(tmp_path, "silent") as server:
        with pytest.raises(ProbeFailure) as raised:
            await get(server.url, server.ca_file, timeout=0.5)
    assert raised.value.reason == "timeout"
    assert "not complete within" in raised.value.detail


def test_request_headers() -> None:
    """Pseudo-headers first; Host becomes :authority; hop-by-hop headers dropped;
    TE only as trailers; names lower-case."""
    fields = request_headers("POST", "https", "a.test", "/x?y=1", [
        ("Host", "b.test"), ("Connection", "close"), ("TE", "gzip"), ("Keep-Alive", "5"),
        ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
    ])
    assert fields == [(":method", "POST"), (":scheme", "https"), (":authority", "b.test"),
                      (":path", "/x?y=1"), ("content-type", "application/json")]
    assert ("te", "trailers") in request_headers("GET", "https", "a", "/", [("TE", "trailers")])


async def test_only_h2_offered_and_no_alpn_answer(tmp_path: Path) -> None:
    """http_versions [h2] to a server that selects nothing in ALPN: protocol, and no
    request is sent (HTTP/1.1 was not offered)."""
    async with serve_h2(tmp_path, "ok", alpn=False) as server:
        with pytest.raises(ProbeFailure) as raised:
            await fetch(Request(server.url), timeout=5,
                        tls=TLSOptions(ca_file=server.ca_file), http_versions=("h2",))
    assert raised.value.reason == "protocol"
    assert raised.value.detail == (f"127.0.0.1:{server.port} selected no protocol in ALPN, "
                                   "but http_versions offers only h2")
    assert server.requests == []
