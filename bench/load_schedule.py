"""Does one event loop keep the load schedule at the rate cap?

Run by hand: python bench/load_schedule.py. A local aiohttp server (in a
child process, so it does not share the probe's event loop) answers at
once; the load probe sends at several rates for 5 s each and we print the
achieved rate, the worst send lag behind the schedule and latency
quantiles measured from the intended send times.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time

from aiohttp import web

from monitor.config.load import LoadProbeConfig
from monitor.probes.base import RunContext
from monitor.probes.load import LoadProbe

RATES = (20, 50, 100, 200)
DURATION = "5s"


def serve(port: int) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def main(port: int) -> None:
    print(f"{'rate':>5} {'sent':>5} {'achieved/s':>10} {'max lag ms':>10} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'run s':>6}")
    for rate in RATES:
        cfg = LoadProbeConfig(name="bench", kind="load", url=f"http://127.0.0.1:{port}/",
                              rate=rate, duration=DURATION, request_timeout="5s",
                              timeout="15s", interval="1h")
        ctx = RunContext("bench", "load")
        started = time.perf_counter()
        await LoadProbe(cfg).run(ctx)
        took = time.perf_counter() - started
        f = ctx.facts
        print(f"{rate:>5} {f['requests']:>5} {f['achieved_rate']:>10.2f} "
              f"{f['max_send_lag_seconds'] * 1000:>10.1f} "
              f"{f['latency_p50_seconds'] * 1000:>7.1f} {f['latency_p99_seconds'] * 1000:>7.1f} "
              f"{took:>6.2f}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        for _ in range(100):  # bounded wait for the server
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(main(port))
    finally:
        server.terminate()
        server.join(5)
