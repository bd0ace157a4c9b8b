"""CPU of an HTTP/2 probe run against an HTTP/1.1 run over TLS, same server, same run.

Starts a real nginx (tests/support/nginx.py: another process, so its CPU is
not counted; this process's ``time.process_time`` is) with ``listen ... ssl
http2`` and runs, interleaved over several rounds, sequential whole `kind:
http` runs (``monitor.runner.run_once``: fresh connection, full TLS handshake,
request, response, checks) that differ only in ``http_versions``:

    h1     http_versions: [http/1.1]   (ALPN http/1.1, our HTTP/1.x parser)
    h2     http_versions: [h2]         (ALPN h2, monitor/net/http2.py on h2)

for a small JSON body (about 1 KiB, a health check) and a 256 KiB one (many
DATA frames and WINDOW_UPDATEs). nginx's access log is checked afterwards:
every h2 run must show HTTP/2.0, every h1 run HTTP/1.1. Prints CPU per run
(median of the rounds) and the same-run ratio h2 / h1.

Run: ``python bench/http2_cpu.py [--requests N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.probes import PROBE_KINDS, build_probe  # noqa: E402
from monitor.redact import Redactor  # noqa: E402
from monitor.runner import run_once  # noqa: E402
from tests.support.h2_nginx import make_certs  # noqa: E402
from tests.support.nginx import serve_nginx  # noqa: E402

PROBE_CONFIG = PROBE_KINDS  # one probe mapping -> its kind's model
BODIES = {"small": 1024, "256k": 256 * 1024}
VERSIONS = {"h1": ["http/1.1"], "h2": ["h2"]}


def site(certs: Path):  # type: ignore[no-untyped-def]
    def block(port: int, root: Path) -> str:
        for name, size in BODIES.items():
            (root / f"{name}.json").write_text(json.dumps({"status": "ok",
                                                           "pad": "x" * (size - 30)}))
        return f"""\
    types {{ application/json json; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {certs / 'server.pem'};
        ssl_certificate_key {certs / 'server.pem'};
        root {root};
    }}
"""
    return block


async def measure(probe: Any, config: Any, requests: int) -> float:
    redactor = Redactor()
    started = time.process_time()
    for _ in range(requests):
        result = await run_once(probe, redactor=redactor)
        if not result.ok:
            raise RuntimeError(f"run failed: {result.reason}: {result.detail}")
    return (time.process_time() - started) * 1000 / requests


async def bench(requests: int, rounds: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        async with serve_nginx(Path(tmp), site(certs)) as nginx:
            probes = {}
            for body in BODIES:
                for name, versions in VERSIONS.items():
                    config = PROBE_CONFIG.validate({
                        "name": f"{name}-{body}", "kind": "http", "interval": "30s",
                        "timeout": "5s", "url": f"https://127.0.0.1:{nginx.port}/{body}.json",
                        "http_versions": versions, "tls": {"ca_file": str(certs / "ca.pem")},
                        "expect": {"http_version": versions[0],
                                   "json": {"$.status": "ok"}}}, {})
                    probes[(body, name)] = (build_probe(config), config)
            for probe, config in probes.values():  # warm up: contexts, imports
                await measure(probe, config, 5)
            figures: dict[tuple[str, str], list[float]] = {key: [] for key in probes}
            for _ in range(rounds):
                for key, (probe, config) in probes.items():
                    figures[key].append(await measure(probe, config, requests))
            await asyncio.sleep(0.2)  # nginx writes its log line after the response
            seen = Counter(line[1] for line in nginx.log_lines())
    print(f"nginx access log: {dict(seen)}")
    total = (rounds * requests + 5) * len(BODIES)
    assert seen == {"HTTP/1.1": total, "HTTP/2.0": total}, seen
    print(f"{requests} runs x {rounds} rounds per variant, interleaved; CPU ms per whole "
          "https run (full TLS handshake), median of rounds [min-max]")
    for body in BODIES:
        row = {}
        for name in VERSIONS:
            values = figures[(body, name)]
            row[name] = statistics.median(values)
            print(f"  {body:6} {name}: {row[name]:.3f} ms  [{min(values):.3f}-{max(values):.3f}]")
        ratios = [h2 / h1 for h1, h2 in zip(figures[(body, "h1")], figures[(body, "h2")],
                                            strict=True)]
        print(f"  {body:6} h2/h1 same-round ratio: median {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}-{max(ratios):.3f}]; "
              f"difference {row['h2'] - row['h1']:+.3f} ms per run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(bench(args.requests, args.rounds))


if __name__ == "__main__":
    main()
