"""TLS contexts of the sql probe, and the TLS phase timed for both drivers.

The contexts come from the one cache of every kind
(:mod:`monitor.net.tlsctx`: rebuilt when ``ca_file``, ``cert_file`` or
``key_file`` change, one ``stat`` each per run, so a rotated client
certificate is used from the next run on without a reload), as instances
of :class:`TimedContext`, a class the cache keys on: nothing is changed on
a shared context.

The TLS handshake is timed through the standard library, not the drivers:
``SSLContext.sslobject_class`` (documented for exactly this) makes every
TLS session the drivers start on our context a :class:`_TimedSSLObject`,
whose ``do_handshake`` asyncio calls until the handshake completes. The
first call is the handshake's start, the successful one its end. That
replaced overriding asyncpg's ``loop.start_tls`` and counting aiomysql's
``write_packet`` calls, and works the same for both drivers.

The name sent as SNI and verified is the connect's own
(``Marks.server_name``: ``tls.server_name``, else the configured host),
not the one the driver passes: the probe gives the drivers the address it
dialled (monitor.net's resolver policy), and a certificate names a host.
"""

from __future__ import annotations

import ssl

from monitor.config.common import TLSOptions
from monitor.config.sql import SqlTLS
from monitor.net.tlsctx import client_context
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


class TimedContext(ssl.SSLContext):
    """Sends as SNI and checks the connect's ``server_name`` instead of what
    the driver passes, and hands each new TLS session the connect's marks.

    Outside a probe's connect (no marks), the driver's name is used.
    """

    sslobject_class = _TimedSSLObject

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        marks = CURRENT.get()
        name = marks.server_name if marks is not None and marks.server_name else server_hostname
        obj = super().wrap_bio(incoming, outgoing, server_side, name, session)
        if isinstance(obj, _TimedSSLObject):
            obj.marks = marks
        return obj


def transport_options(tls: SqlTLS) -> TLSOptions:
    """``tls`` as the transport layer's options (the key of its context cache).

    ``require`` (libpq's sslmode=require: encrypted, the certificate not
    checked) is ``insecure_skip_verify``. Built without validation: the
    files were checked at load, and a key inside ``cert_file`` is allowed here.
    """
    return TLSOptions.model_construct(
        ca_file=tls.ca_file, server_name=tls.server_name,
        insecure_skip_verify=tls.mode == "require",
        cert_file=tls.cert_file, key_file=tls.key_file)


def make_ssl_context(tls: SqlTLS) -> ssl.SSLContext:
    """The client context of ``tls``, from the shared cache (no ALPN: the
    database protocols negotiate none). Raises ProbeFailure (``tls``, or
    ``error`` when that is ours) when a file cannot be loaded."""
    return client_context(transport_options(tls), (), context_class=TimedContext)


class ContextCache:
    """One probe's TLS: its options, and the context as of this run."""

    def __init__(self, tls: SqlTLS) -> None:
        self.tls = tls
        self._options = transport_options(tls)

    def get(self) -> ssl.SSLContext | None:
        """None for mode disable; raises ProbeFailure when a file cannot be loaded."""
        if self.tls.mode == "disable":
            return None
        return client_context(self._options, (), context_class=TimedContext)
