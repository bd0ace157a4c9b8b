"""Our HTTP/1.x response parser against h11, per whole probe run.

Starts the aiohttp server of bench/http_probe_cpu.py in a separate process on
127.0.0.1 (its CPU is not counted: this process's ``time.process_time`` is)
and runs, interleaved over several rounds, sequential whole `kind: http` runs
(``monitor.runner.run_once``: fresh connection, request, response, origin
counting, expect checks):

    own       the fetch of this tree, parsing with monitor.net.http1
    h11       the same fetch with the parser swapped for an h11 adapter (same
              events; h11 also encodes its request side, as an h11 client would)

over plain HTTP (where the parser's share is largest) and HTTPS. It also
parses one typical response in a loop with each parser alone. Prints CPU
per run (median of the rounds) and the same-run ratios; the decision rule
(issue 14) is: use h11 when its extra cost is under a tenth of a whole
probe run, keep our own parser only if it saves more.

Run: ``python bench/http_parser.py [--requests N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h11
import structlog
import trustme

# A sibling script (python puts bench/ on sys.path): its child-process server.
from http_probe_cpu import serve

import monitor.net.fetch as fetch_module
from monitor.config.http import HttpProbeConfig
from monitor.net.errors import Closed, ProtocolError, TooLarge
from monitor.net.http1 import MAX_HEAD_BYTES, Data, End, Event, Head, ResponseParser
from monitor.probes.http import HttpProbe
from monitor.redact import Redactor
from monitor.runner import run_once

ROOT = Path(__file__).resolve().parents[1]
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"X-App-Revision: r1\r\nContent-Length: 16\r\nDate: Tue, 01 Dec 2026 23:00:00 GMT\r\n"
            b"Server: Python/3.11 aiohttp/3.9\r\n\r\n{\"status\": \"ok\"}")


class H11Parser:
    """The parser interface of monitor.net.http1 on top of h11."""

    def __init__(self, method: str = "GET", max_body: int = 1 << 20) -> None:
        self.max_body = max_body
        self.body = 0
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        # An h11 client encodes its request with h11 too: that cost is part of it.
        self.conn.send(h11.Request(method=method, target="/health",
                                   headers=[("Host", "127.0.0.1"), ("Connection", "close")]))
        self.conn.send(h11.EndOfMessage())

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        try:
            self.conn.receive_data(data)
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return events
                if isinstance(event, h11.Response):
                    headers = [(n.decode("latin-1"), v.decode("latin-1"))
                               for n, v in event.headers]
                    events.append(Head(event.http_version.decode(), event.status_code,
                                       event.reason.decode("latin-1"), headers))
                elif isinstance(event, h11.Data):
                    self.body += len(event.data)
                    if self.body > self.max_body:
                        raise TooLarge("body larger than max_body_bytes")
                    events.append(Data(bytes(event.data)))
                elif isinstance(event, h11.EndOfMessage):
                    events.append(End())
                    return events
                elif isinstance(event, h11.ConnectionClosed):
                    raise Closed("before the end of the response")
        except h11.RemoteProtocolError as exc:
            raise ProtocolError(str(exc)) from None


Runner = Callable[[], Awaitable[None]]


async def measure(one: Runner, requests: int) -> float:
    """CPU milliseconds per call of ``requests`` sequential calls of ``one``."""
    for _ in range(min(20, requests)):
        await one()
    started = time.process_time()
    for _ in range(requests):
        await one()
    return (time.process_time() - started) * 1000 / requests


def parse_only(factory: Callable[[], Any], count: int) -> float:
    """CPU microseconds to parse RESPONSE (one read) with a fresh parser, per response."""
    started = time.process_time()
    for _ in range(count):
        parser = factory()
        events = parser.feed(RESPONSE)
        assert isinstance(events[-1], End)
    return (time.process_time() - started) * 1e6 / count


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


async def run_variants(cert_dir: Path, plain_port: int, tls_port: int, requests: int,
                       rounds: int) -> None:
    redactor = Redactor()
    parsers = {"own": ResponseParser, "h11": H11Parser}
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for scheme, port in (("http", plain_port), ("https", tls_port)):
            config = HttpProbeConfig.model_validate({
                "name": "bench", "kind": "http", "interval": "30s", "timeout": "5s",
                "url": f"{scheme}://127.0.0.1:{port}/health",
                "tls": {"ca_file": str(cert_dir / "ca.pem")},
                "expect": {"body_regex": '"ok"'},
                "origins": [{"name": "service", "header": "x-app-revision"}],
            })
            probe = HttpProbe(config)

            async def one(probe: HttpProbe = probe, config: HttpProbeConfig = config) -> None:
                result = await run_once(probe, redactor=redactor)
                assert result.ok, result.detail

            count = requests if scheme == "http" else max(requests // 4, 50)
            for variant in ("own", "h11"):
                fetch_module.ResponseParser = parsers[variant]  # type: ignore[misc]
                try:
                    figure = await measure(one, count)
                finally:
                    fetch_module.ResponseParser = ResponseParser  # type: ignore[misc]
                results.setdefault(f"{scheme} {variant}", []).append(figure)
        results.setdefault("parse own", []).append(parse_only(ResponseParser, 20000))
        results.setdefault("parse h11", []).append(parse_only(H11Parser, 20000))

    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"CPU per whole http probe run (run_once), median of {rounds} rounds, "
          f"{requests} plain / {max(requests // 4, 50)} TLS runs each:")
    for name, value in median.items():
        unit = "us per response (parser alone)" if name.startswith("parse") else "ms per run"
        print(f"  {name:12s} {value:8.3f} {unit}")
    for scheme in ("http", "https"):
        own, h11_ = (median[f"{scheme} {v}"] for v in ("own", "h11"))
        print(f"  {scheme}: h11/own = {h11_ / own:.3f}  (h11 costs {h11_ - own:+.3f} ms, "
              f"{(h11_ - own) / own:+.1%} of a whole run)")
    extra = (median["parse h11"] - median["parse own"]) / 1000
    print(f"  parser alone: h11/own = {median['parse h11'] / median['parse own']:.2f}, "
          f"h11 extra {extra:.3f} ms per response = "
          f"{extra / median['http own']:.1%} of a plain whole run")


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
