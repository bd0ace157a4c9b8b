"""How long a burst run takes, and the knee it reports, against the fault proxy.

Run by hand: python bench/burst_probe.py. Everything on 127.0.0.1; the
proxy and the probe share one event loop (as in `monitor demo`), so the
figures are an upper bound for the probe's own cost. The machine is shared
and noisy: compare rows of one run, not runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from monitor.config.burst import BurstProbeConfig
from monitor.demo.echo import EchoServer, FaultProxy, Faults
from monitor.probes.base import RunContext
from monitor.probes.burst import BurstProbe

CASES = [
    ("no faults, steps [10, 25, 50], 4 KiB", Faults(), [10, 25, 50], 4096, "1s"),
    ("no faults, steps [50..200], 4 KiB", Faults(), [50, 100, 150, 200], 4096, "1s"),
    ("cap 20 (hold 50 ms), latency 100 ms, [5, 10, 20, 40]",
     Faults(cap=20, hold=0.05, latency=0.1), [5, 10, 20, 40], 4096, "1s"),
    ("bandwidth 1 MiB/s, 30 KiB, [5, 10, 20, 40]",
     Faults(bandwidth=1024 * 1024), [5, 10, 20, 40], 30 * 1024, "420ms"),
    ("latency 300 ms, [10, 25, 50]", Faults(latency=0.3), [10, 25, 50], 4096, "1s"),
]
REPEAT = 5


async def main() -> None:
    print(f"{'case':58} {'knee':>5} {'complete':>8} {'run s (median of 5)':>20}")
    for title, faults, steps, payload, slow in CASES:
        echo = EchoServer()
        port = await echo.start()
        proxy = FaultProxy(("127.0.0.1", port), faults)
        await proxy.start()
        cfg = BurstProbeConfig(name="bench", kind="burst", target=f"127.0.0.1:{proxy.port}",
                               steps=steps, payload_bytes=payload, slow_threshold=slow,
                               step_timeout="5s", interval="10m", timeout="60s")
        durations, knees, complete = [], set(), set()
        for _ in range(REPEAT):
            ctx = RunContext("bench", "burst")
            started = time.perf_counter()
            await BurstProbe(cfg).run(ctx)
            durations.append(time.perf_counter() - started)
            knees.add(ctx.facts["capacity"])
            complete.add(ctx.facts["ramp_complete"])
        await proxy.close()
        await echo.close()
        print(f"{title:58} {'/'.join(map(str, sorted(knees))):>5} "
              f"{'/'.join(str(int(c)) for c in sorted(complete)):>8} "
              f"{statistics.median(durations):>20.3f}")


if __name__ == "__main__":
    asyncio.run(main())
