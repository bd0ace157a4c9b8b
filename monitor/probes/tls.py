"""`kind: tls`: a TLS handshake and the certificate chain it presents.

One run resolves ``target``'s host, connects, and does a verifying TLS
handshake (system trust, or only ``tls.ca_file``; the name checked and sent
as SNI is ``tls.server_name`` or the host). It exports the earliest
``notAfter`` of the chain the server presented as
``monitor_tls_cert_expiry_timestamp_seconds`` and says the TLS version,
the leaf's issuer and the days left in the detail. Phases dns, connect
and tls are kept in the result (not exported: the http probe owns the
phase histogram).

Failure reasons for this kind:

    dns               the host does not resolve
    connect_refused   the port refused (or the host was unreachable)
    connect_timeout   TCP connect not done within the timeout
    tls               verification failed (untrusted chain, wrong host,
                      expired) or no handshake was possible
    connection_reset  the peer closed or reset during the handshake
    timeout           the handshake did not finish within the timeout
    assertion         fewer than ``min_days_left`` days before the earliest
                      expiry in the chain
"""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime
from typing import Any

from monitor.config.tls import TlsProbeConfig
from monitor.config.types import split_host_port
from monitor.metricspecs import TLS_EXPIRY
from monitor.net.connect import open_connection
from monitor.probes.base import Probe, ProbeFailure, Result, RunContext


class TlsProbe(Probe[TlsProbeConfig]):
    config: TlsProbeConfig

    def __init__(self, config: TlsProbeConfig) -> None:
        super().__init__(config)
        self._host, self._port = split_host_port(config.target)

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        connection = await open_connection(
            self._host, self._port, timeout=config.timeout,
            tls=config.tls, ctx=ctx, family=config.ip_family,
        )
        try:
            obj = connection.ssl_object
            assert obj is not None
            chain = presented_chain(obj)
            version = obj.version() or "unknown"
        finally:
            connection.close()
        if not chain:
            raise ProbeFailure("tls", "the server presented no certificate we could read")
        expiries = [ssl.cert_time_to_seconds(cert["notAfter"]) for cert in chain]
        earliest = min(expiries)
        ctx.set(TLS_EXPIRY, earliest)
        days_left = (earliest - time.time()) / 86400
        issuer = _name(chain[0].get("issuer", ()))
        when = datetime.fromtimestamp(earliest, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        which = "leaf" if expiries.index(earliest) == 0 else f"chain[{expiries.index(earliest)}]"
        ctx.facts.update({
            "tls_version": version,
            "issuer": issuer,
            "expires": when,
            "days_left": round(days_left, 2),
            "chain_length": len(chain),
        })
        summary = (f"{version}, issuer {issuer}, earliest expiry {when} ({which}), "
                   f"{days_left:.1f} days left")
        if days_left < config.min_days_left:
            raise ProbeFailure("assertion", f"certificate expires in {days_left:.1f} days, "
                               f"below min_days_left {config.min_days_left:g}: {summary}")
        return ctx.success(summary)


def presented_chain(obj: ssl.SSLObject) -> list[dict[str, Any]]:
    """The certificates the server sent, leaf first, as ``getpeercert()`` dicts.

    Python 3.11 has no public API for the peer's chain (3.13 adds
    ``get_unverified_chain()`` returning DER only); the C object under
    ``SSLObject`` has returned certificate objects with ``get_info()`` since
    3.10. Where it is missing we fall back to the verified leaf alone.
    """
    inner: Any = getattr(obj, "_sslobj", None)
    getter = getattr(inner, "get_unverified_chain", None)
    if getter is not None:
        certs = getter() or []
        return [cert.get_info() for cert in certs]
    leaf = obj.getpeercert()
    return [leaf] if leaf else []


def _name(rdns: Any) -> str:
    """An X.509 name from getpeercert() as 'CN=..., O=...' (CN first)."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C"}
    parts = [(short.get(key, key), value) for rdn in rdns for key, value in rdn]
    parts.sort(key=lambda item: item[0] != "CN")
    return ", ".join(f"{key}={value}" for key, value in parts) or "unknown"
