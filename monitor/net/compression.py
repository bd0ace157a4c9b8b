"""Compressed response bodies: ``Content-Encoding`` gzip and deflate, decoded within a cap.

HTTP probes send ``Accept-Encoding: gzip, deflate`` unless the config sets
that header itself: users' clients do, Google's front end and nginx then
compress, and a body is checked as those clients see it (a server that
compresses wrongly is seen too).

The cap (``max_body_bytes``) applies to the decoded size. Inflating is
bounded with zlib's ``max_length``: it stops one byte past the cap, so a
small bomb (a few hundred KiB of gzip that would inflate to gigabytes)
costs at most the cap in memory and the time to inflate that much, and
fails with ``assertion``. The wire body was read within the same cap.

What is decoded: ``gzip`` (and ``x-gzip``), including several gzip members
one after another; ``deflate`` as RFC 9110 means it (a zlib stream) and as
some servers send it (raw deflate, which browsers accept too);
``identity``. Several codings (``gzip, gzip``) are undone last first, at
most :data:`MAX_CODINGS` of them. A coding we did not offer (``br``,
``zstd``: only when the config asked for it) is left as it is. A body that
does not decode raises ``ProbeFailure("protocol")``.
"""

from __future__ import annotations

import zlib

from monitor.probes.base import ProbeFailure

ACCEPT_ENCODING = "gzip, deflate"
# Layers undone at most: one is what servers send; more is a bomb's trick
# (each layer may inflate up to the cap again).
MAX_CODINGS = 2
# gzip members in one body (nginx and Google's front end send one; aiohttp
# caps concatenated members at 1024 for the same reason: work per byte).
MAX_MEMBERS = 64
_GZIP_MAGIC = b"\x1f\x8b"


class _Decoded(Exception):
    """Internal: stop, the output passed the cap."""


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """``body`` with its ``content_encoding`` undone, at most ``limit`` bytes.

    Raises ProbeFailure("assertion") when the decoded body would be larger
    than ``limit``, ProbeFailure("protocol") when it does not decode.
    Unknown codings leave the body as sent.
    """
    if not body or not content_encoding:
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings or any(c not in _DECODERS for c in codings):
        return body  # nothing to do, or a coding we did not ask for: left as sent
    if len(codings) > MAX_CODINGS:
        raise ProbeFailure("protocol", f"Content-Encoding {content_encoding[:80]!r} has more "
                                       f"than {MAX_CODINGS} codings")
    for coding in reversed(codings):
        try:
            body = _DECODERS[coding](body, limit)
        except _Decoded:
            raise ProbeFailure("assertion", f"body larger than max_body_bytes ({limit} bytes) "
                                            f"once decoded ({coding}, {len(body)} bytes "
                                            "on the wire)") from None
        except zlib.error as exc:
            raise ProbeFailure("protocol", f"{coding} body does not decode: {exc}") from None
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> tuple[bytes, bytes]:
    """One zlib/gzip/raw stream: (its output, the bytes after its end)."""
    inflater = zlib.decompressobj(wbits)
    # Never more than limit + 1 bytes of output: past the cap is enough to know.
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise _Decoded
    if not inflater.eof:
        raise zlib.error("the stream ends early (truncated)")
    return out, inflater.unused_data


def _gzip(data: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    rest = data
    for _ in range(MAX_MEMBERS):
        out, rest = _inflate(rest, 16 + zlib.MAX_WBITS, limit - size)
        parts.append(out)
        size += len(out)
        # What follows a member is another member or padding (some servers
        # pad with zeros; browsers and curl ignore it).
        if not rest.startswith(_GZIP_MAGIC):
            return b"".join(parts)
    raise zlib.error(f"more than {MAX_MEMBERS} gzip members")


def _deflate(data: bytes, limit: int) -> bytes:
    try:
        out, _ = _inflate(data, zlib.MAX_WBITS, limit)
    except zlib.error:  # no zlib header: raw deflate, as IIS and others send it
        out, _ = _inflate(data, -zlib.MAX_WBITS, limit)
    return out


_DECODERS = {"gzip": _gzip, "x-gzip": _gzip, "deflate": _deflate}
