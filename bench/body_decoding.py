"""CPU of decoding compressed bodies (monitor/net/compression.py), in this process.

    plain       an uncompressed 10 KB JSON health body (decode_body returns it)
    gzip-10k    the same body gzip'd (about 0.8 KB on the wire)
    gzip-1mib   1 MiB of JSON gzip'd (about 8 KB): a body at the default cap
    bomb        64 KiB of gzip that would inflate to 64 MiB, stopped at the 1 MiB cap

Prints the median over rounds of process CPU per call (the machine is
shared: compare the rows of one run). Run: ``python bench/body_decoding.py``.
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Callable

from monitor.net.compression import decode_body
from monitor.probes.base import ProbeFailure

CAP = 1024 * 1024
ROUNDS = 5


def per_call(fn: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - started) / calls


def main() -> None:
    body = json.dumps({"status": "ok",
                       "checks": [{"name": f"check-{n}", "ok": True} for n in range(300)]}
                      ).encode()
    small = gzip.compress(body)
    large = gzip.compress((body * 200)[:CAP])
    bomb = gzip.compress(bytes(64 * 1024 * 1024))

    def bombed() -> None:
        try:
            decode_body(bomb, "gzip", CAP)
        except ProbeFailure:
            return
        raise AssertionError("the bomb was not stopped")

    cases: dict[str, tuple[Callable[[], object], int]] = {
        "plain": (lambda: decode_body(body, None, CAP), 5000),
        "gzip-10k": (lambda: decode_body(small, "gzip", CAP), 2000),
        "gzip-1mib": (lambda: decode_body(large, "gzip", CAP), 50),
        "bomb": (bombed, 50),
    }
    sizes = {"plain": len(body), "gzip-10k": len(small), "gzip-1mib": len(large),
             "bomb": len(bomb)}
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, (fn, calls) in cases.items():
            figures[name].append(per_call(fn, calls))
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name:10} {sizes[name]:>8} bytes in  {median * 1e6:9.1f} us/call")


if __name__ == "__main__":
    main()
