"""monitor/net/compression.py: gzip and deflate bodies decoded within max_body_bytes."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest

from monitor.net.compression import MAX_CODINGS, decode_body
from monitor.probes.base import ProbeFailure

TEXT = b'{"status": "ok", "items": [' + b'"item", ' * 500 + b'"last"]}'
LIMIT = 1024 * 1024


def bomb(decoded_size: int) -> bytes:
    """gzip of ``decoded_size`` zero bytes, built a MiB at a time (about 1/1000 of it)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(decoded_size // len(block))]
    return b"".join([*parts, packer.flush()])


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoded", "coding"),
    [(gzip.compress(TEXT), "gzip"), (gzip.compress(TEXT), "x-gzip"),
     (gzip.compress(TEXT), " GZIP "), (zlib.compress(TEXT), "deflate"),
     (raw_deflate(TEXT), "deflate"),
     (gzip.compress(TEXT[:100]) + gzip.compress(TEXT[100:]), "gzip"),
     (gzip.compress(TEXT) + b"\0" * 8, "gzip"),
     (gzip.compress(gzip.compress(TEXT)), "gzip, gzip"),
     (gzip.compress(TEXT), "identity, gzip"), (TEXT, "identity")],
    ids=["gzip", "x-gzip", "case-and-spaces", "deflate-zlib", "deflate-raw", "two-gzip-members",
         "gzip-zero-padding", "gzip-twice", "identity-then-gzip", "identity"],
)
def test_decodes_what_servers_send(encoded: bytes, coding: str) -> None:
    """Each coding servers use, and their combinations, decode to the original bytes."""
    assert decode_body(encoded, coding, LIMIT) == TEXT


@pytest.mark.parametrize("coding", [None, "", "br", "zstd", "gzip, br"],
                         ids=["no-header", "empty", "br", "zstd", "gzip-then-br"])
def test_a_coding_not_offered_leaves_the_body_as_sent(coding: str | None) -> None:
    """Codings we never ask for (only a config's own Accept-Encoding gets them) stay encoded."""
    assert decode_body(b"\x8b\x00opaque", coding, LIMIT) == b"\x8b\x00opaque"


def test_empty_body_is_not_decoded() -> None:
    """A HEAD or 204 answer with Content-Encoding: gzip has nothing to inflate."""
    assert decode_body(b"", "gzip", LIMIT) == b""


@pytest.mark.parametrize(
    ("encoded", "coding", "message"),
    [(b"not gzip at all", "gzip", "gzip body does not decode"),
     (gzip.compress(TEXT)[:-20], "gzip", "ends early"),
     (b"\x00\x01garbage", "deflate", "deflate body does not decode")],
    ids=["not-gzip", "truncated-gzip", "not-deflate"],
)
def test_a_body_that_does_not_decode_is_a_protocol_failure(encoded: bytes, coding: str,
                                                           message: str) -> None:
    """Corrupt or cut compressed bodies fail with protocol, saying which coding."""
    with pytest.raises(ProbeFailure) as raised:
        decode_body(encoded, coding, LIMIT)
    assert raised.value.reason == "protocol"
    assert message in raised.value.detail


def test_more_codings_than_the_cap_are_refused() -> None:
    """gzip applied many times over (each layer could inflate to the cap) is refused."""
    encoded = TEXT
    for _ in range(MAX_CODINGS + 1):
        encoded = gzip.compress(encoded)
    with pytest.raises(ProbeFailure) as raised:
        decode_body(encoded, ", ".join(["gzip"] * (MAX_CODINGS + 1)), LIMIT)
    assert raised.value.reason == "protocol"
    assert "codings" in raised.value.detail


def test_the_cap_applies_to_the_decoded_size() -> None:
    """A body under the cap on the wire but over it decoded fails with assertion."""
    encoded = gzip.compress(bytes(5000))
    assert decode_body(encoded, "gzip", 5000) == bytes(5000)
    with pytest.raises(ProbeFailure) as raised:
        decode_body(encoded, "gzip", 4999)
    assert raised.value.reason == "assertion"
    assert "larger than max_body_bytes (4999 bytes) once decoded (gzip" in raised.value.detail


def test_a_gzip_bomb_costs_at_most_the_cap_in_memory() -> None:
    """128 KiB of gzip that inflates to 128 MiB fails with assertion, allocating about the cap."""
    encoded = bomb(128 * 1024 * 1024)
    assert len(encoded) < 256 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ProbeFailure) as raised:
            decode_body(encoded, "gzip", LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raised.value.reason == "assertion"
    # The cap (1 MiB) plus one byte of output, and zlib's own state: never the 128 MiB.
    assert peak < 3 * LIMIT, f"peak {peak} bytes"


def test_a_bomb_split_over_gzip_members_is_capped_in_total() -> None:
    """Members each under the cap but over it together fail too."""
    member = gzip.compress(bytes(LIMIT // 2 + 1))
    with pytest.raises(ProbeFailure) as raised:
        decode_body(member * 2, "gzip", LIMIT)
    assert raised.value.reason == "assertion"
