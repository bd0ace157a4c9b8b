"""TLS contexts of the sql probe, and the TLS phase timed for both drivers.

The TLS handshake is timed through the standard library, not the drivers:
``SSLContext.sslobject_class`` (documented for exactly this) makes every
TLS session the drivers start on our context a :class:`_TimedSSLObject`,
whose ``do_handshake`` asyncio calls until the handshake completes. The
first call is the handshake's start, the successful one its end. That
replaced overriding asyncpg's ``loop.start_tls`` and counting aiomysql's
``write_packet`` calls, and works the same for both drivers.

Contexts are cached per probe and rebuilt when ``ca_file``, ``cert_file``
or ``key_file`` change (size or mtime, one ``stat`` each per run), so a
rotated client certificate is used from the next run on without a reload.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from monitor.config.sql import SqlTLS
from monitor.probes.sql.session import CURRENT, Marks


class _TimedSSLObject(ssl.SSLObject):
    """An SSL session that writes the handshake's start and end into its marks."""

    marks: Marks | None = None

    def do_handshake(self) -> None:
        marks = self.marks
        if marks is not None and marks.tls_start is None:
            marks.tls_start = marks.mark("tls_start")
            marks.stage = "tls"
        super().do_handshake()  # raises SSLWantReadError until the handshake is done
        if marks is not None and marks.tls_done is None:
            marks.tls_done = marks.mark("tls_done")
            marks.stage = "startup"


class _ProbeContext(ssl.SSLContext):
    """Checks (and sends as SNI) ``server_name`` instead of the host, and
    hands each new TLS session the marks of the connect under way.

    Both drivers pass the configured host as the TLS server name; a server
    reached by IP (Cloud SQL's private IP) has a certificate for a name.
    """

    server_name: str | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side,
                               self.server_name or server_hostname, session)
        if isinstance(obj, _TimedSSLObject):
            obj.marks = CURRENT.get()
        return obj


def make_ssl_context(tls: SqlTLS) -> ssl.SSLContext:
    """The client context of ``tls`` (raises OSError / ssl.SSLError on bad files)."""
    context = _ProbeContext(ssl.PROTOCOL_TLS_CLIENT)
    context.sslobject_class = _TimedSSLObject
    if tls.mode == "require":
        # libpq's sslmode=require: encrypted, the certificate is not checked.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.server_name = tls.server_name
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=str(tls.ca_file))
        else:
            context.load_default_certs()
    if tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file),
                                str(tls.key_file) if tls.key_file is not None else None)
    return context


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1)  # gone: the rebuild reports it
    return info.st_mtime_ns, info.st_size


class ContextCache:
    """One probe's context, rebuilt when one of its files changed."""

    def __init__(self, tls: SqlTLS) -> None:
        self.tls = tls
        self._context: ssl.SSLContext | None = None
        self._stamps: tuple[tuple[int, int] | None, ...] = ()
        self.builds = 0  # how often a context was built (tests)

    def get(self) -> ssl.SSLContext | None:
        """None for mode disable; raises OSError / ssl.SSLError on bad files."""
        tls = self.tls
        if tls.mode == "disable":
            return None
        stamps = tuple(_stamp(p) for p in (tls.ca_file, tls.cert_file, tls.key_file))
        if self._context is None or stamps != self._stamps:
            self._context = make_ssl_context(tls)
            self._stamps = stamps
            self.builds += 1
        return self._context
