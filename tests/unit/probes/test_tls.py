"""The `kind: tls` probe against real TLS servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from aiohttp import web

from monitor.config.tls import TlsProbeConfig
from monitor.metricspecs import TLS_EXPIRY
from monitor.probes import KINDS
from monitor.probes.base import Result
from monitor.probes.tls import TlsProbe
from tests.support.configs import probe_config
from tests.support.http_servers import Certs, self_signed, serve_app, serve_raw
from tests.support.running import run_probe

EXPIRY = TLS_EXPIRY.name  # as samples name it


def config(target: str, **fields: Any) -> TlsProbeConfig:
    fields = {"interval": "30s", "timeout": "2s", **fields}
    cfg: TlsProbeConfig = probe_config("tls", target=target, **fields)
    return cfg


async def probe(target: str, **fields: Any) -> Result:
    return await run_probe(TlsProbe(config(target, **fields)))


def expiry(result: Result) -> float | None:
    values = [s.value for s in result.samples if s.metric == EXPIRY and s.op == "set"]
    assert len(values) <= 1
    return values[0] if values else None


def hello() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="hello")
    app = web.Application()
    app.router.add_get("/", handler)
    return app


def in_days(days: float) -> dt.datetime:
    # X.509 validity has whole seconds.
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)


async def test_registered() -> None:
    """The registry maps kind tls to TlsProbe."""
    assert KINDS["tls"] is TlsProbe


async def test_expiry_timestamp_is_the_certificates_not_after(certs: Certs) -> None:
    """The exported expiry equals the presented certificate's notAfter."""
    not_after = in_days(90)
    context = certs.server_context("127.0.0.1", not_after=not_after)
    async with serve_app(hello(), ssl_context=context) as server:
        result = await probe(server.target, tls={"ca_file": str(certs.ca_file)})
    assert result.ok, result.detail
    assert expiry(result) == not_after.timestamp()
    assert result.facts["tls_version"].startswith("TLSv1.")
    assert result.facts["issuer"].startswith("O=trustme")
    assert "TLSv1." in result.detail
    assert "issuer O=trustme" in result.detail
    assert "days left" in result.detail
    assert list(result.phases) == ["connect", "tls"]


async def test_fewer_days_than_min_days_left_is_assertion(certs: Certs) -> None:
    """A certificate closer to expiry than min_days_left fails with assertion,
    and its expiry is still exported."""
    not_after = in_days(5)
    context = certs.server_context("127.0.0.1", not_after=not_after)
    async with serve_app(hello(), ssl_context=context) as server:
        result = await probe(server.target, tls={"ca_file": str(certs.ca_file)},
                             min_days_left=14)
        relaxed = await probe(server.target, tls={"ca_file": str(certs.ca_file)},
                              min_days_left=4)
    assert result.reason == "assertion"
    assert "certificate expires in 5.0 days, below min_days_left 14" in result.detail
    assert expiry(result) == not_after.timestamp()
    assert relaxed.ok, relaxed.detail


async def test_wrong_host_is_tls(certs: Certs) -> None:
    """A certificate for another name fails with tls."""
    context = certs.server_context("other.example")
    async with serve_app(hello(), ssl_context=context) as server:
        result = await probe(server.target, tls={"ca_file": str(certs.ca_file)})
    assert result.reason == "tls"
    assert "mismatch" in result.detail
    assert expiry(result) is None


async def test_server_name_is_sent_and_verified(certs: Certs) -> None:
    """tls.server_name is the SNI and the name verified, whatever the address."""
    context = certs.server_context("svc.example")
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]
    async with serve_app(hello(), ssl_context=context) as server:
        result = await probe(server.target, tls={"ca_file": str(certs.ca_file),
                                                 "server_name": "svc.example"})
    assert result.ok, result.detail
    assert names == ["svc.example"]


async def test_untrusted_is_tls(certs: Certs) -> None:
    """A chain that the system trust store does not know fails with tls."""
    async with serve_app(hello(), ssl_context=certs.server_context()) as server:
        result = await probe(server.target)
    assert result.reason == "tls"
    assert "unable to get local issuer certificate" in result.detail


async def test_self_signed_trusted_through_ca_file(tmp_path: Path) -> None:
    """A self-signed certificate passes with itself as ca_file."""
    context, cert_file = self_signed(tmp_path)
    async with serve_app(hello(), ssl_context=context) as server:
        untrusted = await probe(server.target)
        trusted = await probe(server.target, tls={"ca_file": str(cert_file)})
    assert untrusted.reason == "tls"
    assert "self-signed" in untrusted.detail
    assert trusted.ok, trusted.detail
    assert trusted.facts["chain_length"] == 1


async def test_expired_is_tls(certs: Certs) -> None:
    """An expired certificate fails verification: tls, saying expired."""
    context = certs.server_context("127.0.0.1", not_before=in_days(-30),
                                   not_after=in_days(-1))
    async with serve_app(hello(), ssl_context=context) as server:
        result = await probe(server.target, tls={"ca_file": str(certs.ca_file)})
    assert result.reason == "tls"
    assert "expired" in result.detail


async def test_expired_with_verification_off_is_assertion(certs: Certs) -> None:
    """With insecure_skip_verify the chain is still read: expired -> assertion."""
    not_after = in_days(-1)
    context = certs.server_context("127.0.0.1", not_before=in_days(-30), not_after=not_after)
    async with serve_app(hello(), ssl_context=context) as server:
        result = await probe(server.target, tls={"insecure_skip_verify": True})
    assert result.reason == "assertion"
    assert expiry(result) == not_after.timestamp()


async def test_plain_tcp_server_is_tls() -> None:
    """A server that does not speak TLS fails with tls (or a reset), never error."""
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with serve_raw(plain) as server:
        result = await probe(server.target)
    assert result.reason == "tls"
    assert "handshake" in result.detail


async def test_handshake_never_answered_is_timeout() -> None:
    """A server that accepts but never answers the ClientHello: timeout."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serve_raw(silent) as server:
        result = await probe(server.target, timeout="300ms")
    assert result.reason == "timeout"
    assert "TLS handshake" in result.detail


async def test_refused_is_connect_refused(free_port: int) -> None:
    """A closed port fails with connect_refused."""
    result = await probe(f"127.0.0.1:{free_port}")
    assert result.reason == "connect_refused"


async def test_expiry_gauge_through_the_recorder(certs: Certs) -> None:
    """Through the recorder the expiry lands on the registry as a gauge."""
    from prometheus_client import CollectorRegistry

    from monitor.metrics import Metrics
    from monitor.recorder import Recorder
    from monitor.redact import Redactor
    from monitor.runner import run_once

    registry = CollectorRegistry()
    recorder = Recorder(Metrics(registry))
    not_after = in_days(40)
    context = certs.server_context("127.0.0.1", not_after=not_after)
    async with serve_app(hello(), ssl_context=context) as server:
        cfg = config(server.target, tls={"ca_file": str(certs.ca_file)})
        recorder.register(cfg)
        result = await run_once(TlsProbe(cfg), redactor=Redactor(),
                                on_result=recorder.record)
    assert result.ok, result.detail
    assert registry.get_sample_value(EXPIRY, {"probe": "cert", "kind": "tls"}) == \
        not_after.timestamp()
