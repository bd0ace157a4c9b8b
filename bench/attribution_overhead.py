"""What attribution costs a failing probe: its own durations with and without lookups.

Run by hand: python bench/attribution_overhead.py [RUNS]. Four daemons in one
event loop probe the same local aiohttp server answering 502 (every run
fails, so every run is looked up): one without `attribution:`, three with it
against the fake Cloud Logging API of tests/support/fake_logging.py
answering at once, hanging, or failing with 500. Runs are interleaved
(plain, ok, hang, 500, plain, ...) so that the noise of the shared machine
hits them alike; compare the ratios of one run, not runs. Also prints the
trace-context cost: the same http probe with trace_context off vs on.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.probes import PROBE_KINDS
from monitor.redact import Redactor
from monitor.tracecontext import CLOUD_TRACE
from tests.support.fake_logging import lb_entry, serve_fake_logging
from tests.support.http_servers import serve_app
from tests.support.metadata import fake_metadata

PROJECT = "demo-project"


async def daemon(path: Path, url: str, extra: str = "", probe_extra: str = "") -> Daemon:
    path.write_text(f"""
global: {{interval: 30s, timeout: 2s}}
probes:
  - {{name: web, kind: http, url: {url}/health{probe_extra}}}
{extra}
""")
    config = load_config(path, kinds=PROBE_KINDS)
    d = Daemon(path, config, metrics=Metrics(ConstLabelRegistry()),
               redactor=Redactor(config.secrets))
    await d.start()
    return d


def row(name: str, values: list[float], base: list[float]) -> str:
    med, p90 = statistics.median(values), statistics.quantiles(values, n=10)[-1]
    ratio = med / statistics.median(base)
    return f"{name:34} {med * 1000:9.3f} {p90 * 1000:9.3f} {ratio:7.3f}"


async def main(runs: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    async with serve_fake_logging() as ok, serve_fake_logging() as hang, \
            serve_fake_logging() as failing, fake_metadata() as metadata:
        hang.fail = "hang"
        failing.fail = 500
        os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        os.environ["GCE_METADATA_HOST"] = os.environ["GCE_METADATA_IP"] = metadata.host
        from google.auth.compute_engine import _metadata
        importlib.reload(_metadata)  # google-auth reads the variable when imported

        async def no_backend(request: web.Request) -> web.Response:
            # The same work with and without the header: the server shares the loop.
            trace_id = request.headers.get(CLOUD_TRACE, "0" * 32).split("/")[0]
            ok.add(lb_entry(PROJECT, trace_id, 502, "failed_to_pick_backend"))
            return web.Response(status=502, text="no healthy upstream")

        app = web.Application()
        app.router.add_get("/health", no_backend)
        async with serve_app(app) as served:
            def block(fake_url: str) -> str:
                return (f"attribution: {{project: {PROJECT}, endpoint: '{fake_url}', "
                        "delay: 10ms, timeout: 30s, max_lookups_per_minute: 30}")
            daemons = {
                "no attribution": await daemon(tmp / "a.yaml", served.url),
                "attribution, API answers": await daemon(tmp / "b.yaml", served.url,
                                                         block(ok.url)),
                "attribution, API hangs": await daemon(tmp / "c.yaml", served.url,
                                                       block(hang.url)),
                "attribution, API answers 500": await daemon(tmp / "d.yaml", served.url,
                                                             block(failing.url)),
                "no attribution, trace_context off": await daemon(
                    tmp / "e.yaml", served.url,
                    probe_extra=", trace_context: {w3c: false, google: false}"),
            }
            durations: dict[str, list[float]] = {name: [] for name in daemons}
            for _ in range(runs):
                for name, d in daemons.items():
                    await d._run("web")
                    durations[name].append(d.recorder.probes["web"].ring[-1].duration)
            await asyncio.sleep(0.2)
            attributed = daemons["attribution, API answers"].metrics.registry.get_sample_value(
                "monitor_http_failure_attribution_total",
                {"probe": "web", "kind": "http", "attribution": "lb:failed_to_pick_backend"})
            for d in daemons.values():
                await d.stop()
    base = durations["no attribution"]
    print(f"{runs} failing runs each, interleaved; the probe's own durations")
    print(f"{'daemon':34} {'median ms':>9} {'p90 ms':>9} {'ratio':>7}")
    for name, values in durations.items():
        print(row(name, values, base))
    print(f"attributed lb:failed_to_pick_backend (API answers): {attributed:g} "
          f"(cap 30 a minute); lookups hanging at the end: {hang.hanging}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
