"""One cache of TLS client contexts for every kind.

Building a context with the system trust store costs milliseconds, so
probes share one per key: the CA file and its mtime (a rotated CA is
picked up on the next run), the client certificate and key files and
their mtimes, ``insecure_skip_verify``, the ALPN protocols and the
context's class. The server name is not part of a context (it is given
per connection: SNI and the name verified), so probes that differ only in
it share one.

``context_class`` is for a kind whose TLS is run by a driver, not by
:mod:`monitor.net.connect`: ``kind: sql`` passes an ``SSLContext`` subclass
whose ``sslobject_class`` times the handshake and whose ``wrap_bio`` gives
the name to verify per connection (monitor/probes/sql/tls.py). It is part
of the key, so such contexts are built for it and never shared with, or
changed under, the other kinds.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from monitor.config.common import TLSOptions
from monitor.net.exhaustion import own_exhaustion
from monitor.probes.base import ProbeFailure

HTTP_ALPN = ("http/1.1",)
# Reloads with ever-changing CA files must not grow the cache without end.
MAX_CONTEXTS = 64

_Key = tuple[str | None, int, str | None, str | None, int, bool, tuple[str, ...],
             type[ssl.SSLContext]]
_CONTEXTS: dict[_Key, ssl.SSLContext] = {}


def _mtime(path: Path | None) -> int:
    return os.stat(path).st_mtime_ns if path is not None else 0


def client_context(tls: TLSOptions | None, alpn: tuple[str, ...] = HTTP_ALPN, *,
                   context_class: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    """The client context for ``tls``: the system trust store, or only
    ``ca_file`` when given; no verification with ``insecure_skip_verify``;
    ``cert_file``/``key_file`` presented when the server asks; ``alpn``
    offered (nothing when empty); an instance of ``context_class``.

    Raises ProbeFailure("tls") when a file cannot be loaded any more (it was
    removed or replaced since the config loaded), ``error`` when that is ours.
    """
    tls = tls or TLSOptions()
    ca = str(tls.ca_file) if tls.ca_file is not None else None
    cert = str(tls.cert_file) if tls.cert_file is not None else None
    key_file = str(tls.key_file) if tls.key_file is not None else None
    try:
        key: _Key = (ca, _mtime(tls.ca_file), cert, key_file,
                     _mtime(tls.cert_file) + _mtime(tls.key_file),
                     tls.insecure_skip_verify, alpn, context_class)
        context = _CONTEXTS.get(key)
        if context is None:
            context = new_context(tls, alpn, context_class)
            if len(_CONTEXTS) >= MAX_CONTEXTS:
                _CONTEXTS.clear()
            _CONTEXTS[key] = context
    except (OSError, ssl.SSLError) as exc:
        own = own_exhaustion(exc, "loading TLS files")
        if own is not None:
            raise own from None
        which = f"ca_file {ca}" if ca is not None else ""
        if cert is not None:
            which = f"{which} or " * bool(which) + f"cert_file {cert}"
        raise ProbeFailure("tls", f"cannot load {which}: "
                                  f"{getattr(exc, 'reason', None) or exc}") from None
    return context


def new_context(tls: TLSOptions, alpn: tuple[str, ...] = (),
                context_class: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    """A fresh context (uncached): what :func:`client_context` builds."""
    if context_class is ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None)
    else:
        # What create_default_context builds for a client (PROTOCOL_TLS_CLIENT:
        # CERT_REQUIRED and check_hostname), of the class asked for.
        context = context_class(ssl.PROTOCOL_TLS_CLIENT)
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=str(tls.ca_file))
        elif not tls.insecure_skip_verify:  # nothing to verify against otherwise
            context.load_default_certs()
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def clear() -> None:
    """Forget every context (tests)."""
    _CONTEXTS.clear()


__all__ = ["HTTP_ALPN", "clear", "client_context", "new_context"]
