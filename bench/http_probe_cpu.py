"""CPU per HTTP probe run: monitor's own client vs a plain aiohttp request.

Starts an aiohttp server in a separate process on 127.0.0.1 (its CPU is not
counted), then, in this process, runs sequential requests with a fresh
connection each and divides this process's CPU time by their number:

    fetch        monitor.net.fetch.fetch (what every HTTP kind uses)
    probe        a whole `kind: http` run through monitor.runner.run_once
                 (RunContext, origin counting, expect checks, redaction)
    aiohttp      aiohttp.ClientSession with force_close=True (a fresh
                 connection per request), the body read

over plain HTTP and over HTTPS (a trustme CA; TLS 1.3 handshake each time).
Variants are interleaved over several rounds and the median is printed,
because this machine is shared and noisy: read the ratios, not the absolute
figures. Run: ``python bench/http_probe_cpu.py [--requests N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import structlog
import trustme

from monitor.config.http import HttpProbeConfig
from monitor.net.fetch import Request, fetch
from monitor.probes.http import HttpProbe
from monitor.redact import Redactor
from monitor.runner import run_once


def serve(cert_dir: Path) -> None:
    """Child process: plain and TLS listeners of one aiohttp app; prints ports."""
    from aiohttp import web

    async def health(request: web.Request) -> web.Response:
        return web.Response(text='{"status": "ok"}', headers={"x-app-revision": "r1"})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        plain = web.TCPSite(runner, "127.0.0.1", 0)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_dir / "server.pem")
        secure = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await plain.start()
        await secure.start()
        ports = [site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                 for site in (plain, secure)]
        print(*ports, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


Runner = Callable[[], Awaitable[None]]


async def measure(name: str, one: Runner, requests: int) -> float:
    """CPU milliseconds per request of ``requests`` sequential calls of ``one``."""
    for _ in range(min(20, requests)):  # warm up caches, imports, TLS contexts
        await one()
    started = time.process_time()
    for _ in range(requests):
        await one()
    return (time.process_time() - started) * 1000 / requests


async def bench(requests: int, rounds: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        cert_dir = Path(tmp)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(cert_dir / "ca.pem"))
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            str(cert_dir / "server.pem"))
        child = subprocess.Popen([sys.executable, __file__, "--serve", tmp],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            plain_port, tls_port = map(int, child.stdout.readline().split())
            await run_variants(cert_dir, plain_port, tls_port, requests, rounds)
        finally:
            child.terminate()
            child.wait(timeout=10)


async def run_variants(cert_dir: Path, plain_port: int, tls_port: int,
                       requests: int, rounds: int) -> None:
    ca_file = cert_dir / "ca.pem"
    aiohttp_ssl = ssl.create_default_context(cafile=str(ca_file))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    redactor = Redactor()
    variants: dict[str, Runner] = {}
    for scheme, port in (("http", plain_port), ("https", tls_port)):
        url = f"{scheme}://127.0.0.1:{port}/health"
        config = HttpProbeConfig.model_validate({
            "name": "bench", "kind": "http", "interval": "30s", "timeout": "5s", "url": url,
            "tls": {"ca_file": str(ca_file)}, "expect": {"body_regex": '"ok"'},
            "origins": [{"name": "service", "header": "x-app-revision"}],
        })
        probe = HttpProbe(config)
        request = Request(url)

        def make_fetch(request: Request = request, config: HttpProbeConfig = config) -> Runner:
            async def one() -> None:
                response = await fetch(request, timeout=5, tls=config.tls)
                assert response.status == 200
            return one

        def make_probe(probe: HttpProbe = probe, config: HttpProbeConfig = config) -> Runner:
            async def one() -> None:
                result = await run_once(probe, redactor=redactor)
                assert result.ok, result.detail
            return one

        def make_aiohttp(url: str = url, scheme: str = scheme) -> Runner:
            context = aiohttp_ssl if scheme == "https" else None

            async def one() -> None:
                async with session.get(url, ssl=context) as response:
                    await response.read()
                    assert response.status == 200
            return one

        variants[f"{scheme} fetch"] = make_fetch()
        variants[f"{scheme} probe"] = make_probe()
        variants[f"{scheme} aiohttp"] = make_aiohttp()

    results: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(rounds):
            for name, one in variants.items():
                count = requests if name.startswith("http ") else max(requests // 4, 50)
                results[name].append(await measure(name, one, count))
    finally:
        await session.close()

    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"CPU per request, median of {rounds} rounds "
          f"({requests} plain / {max(requests // 4, 50)} TLS requests each):")
    for name, value in median.items():
        print(f"  {name:15s} {value:7.3f} ms")
    for scheme in ("http", "https"):
        base = median[f"{scheme} aiohttp"]
        print(f"  {scheme}: fetch/aiohttp = {median[f'{scheme} fetch'] / base:.2f}, "
              f"probe run/aiohttp = {median[f'{scheme} probe'] / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", metavar="CERT_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return
    asyncio.run(bench(args.requests, args.rounds))


if __name__ == "__main__":
    main()
