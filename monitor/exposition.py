"""/metrics in the Prometheus text format, rendered in slices off the probing path.

prometheus_client's handler renders the whole exposition in one synchronous
call on the event loop (``generate_latest``): at 1000 http probes that
blocked every probe for seconds, and the durations probes measured then
included the scrape. Here the same text is produced

- from the metric objects' values directly, with each series' line prefix
  (name, sorted labels, constant labels) built once and kept as long as the
  series lives: formatting a line costs a value conversion and a join;
- in slices of about ``SLICE_SECONDS`` of CPU, handing the loop back between
  slices, so that a probe due during a scrape starts at most one slice late.

The output is byte for byte what ``generate_latest`` prints for the same
registry state (tests/unit/test_exposition.py compares both). It reads
prometheus_client's metric objects through attributes that library does not
document (``_metrics``, ``_value``, ``_buckets``, ...); that test fails first
if a new version changes them. Collectors other than Counter, Gauge and
Histogram (and their subclasses in monitor.metrics) go through their own
``collect()``.

Figures (bench/daemon.py, 1000 http probes on this repository's machine):
see the README's Performance section.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.utils import floatToGoString as _untyped_float

floatToGoString = cast(Callable[[float], str], _untyped_float)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# CPU per slice before the loop gets its turn: a probe's answer arriving
# meanwhile waits at most this long. 200 probes scraped every second, probe
# duration p99 scraped minus quiet: +1.4 to +2.6 ms with 1 ms slices, +0.4 to
# +1.4 ms with 0.5 ms (bench/daemon.py --fidelity-only, quiet machine).
SLICE_SECONDS = 0.0005
# A scrape still going after this long (a busy loop between slices, a large
# registry) takes longer slices, so that it ends within Prometheus' timeout:
# at 1000 probes and 1000 runs/s, 1 ms slices throughout took 1.3 s of wall
# time. (A 200-probe scrape takes ~15 ms and never gets here.)
LONG_SCRAPE_SECONDS = 0.05
LONG_SLICE_SECONDS = 0.003
# Series rendered between two looks at the clock.
CHECK_EVERY = 32


def _label_text(labels: dict[str, str]) -> str:
    """Sorted by name, values escaped as the text format says (\\, \\n, \\")."""
    return ",".join(
        '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"'))
        for k, v in sorted(labels.items()))


def _fmt(value: float) -> str:
    """floatToGoString(value) + newline; repr is what it returns for most values."""
    text = repr(value)
    if "e" in text or "n" in text or (value > 0 and text.find(".") > 6):  # exponents, inf, nan
        return floatToGoString(value) + "\n"
    return text + "\n"


def _name_of(line: str) -> str:
    return line.split(" ", 1)[0].split("{", 1)[0]


def _sample_names(wrapper: Any) -> frozenset[str]:
    if wrapper._type == "histogram":
        return frozenset(f"{wrapper._name}{s}" for s in ("_bucket", "_count", "_sum"))
    return frozenset({wrapper._name + ("_total" if wrapper._type == "counter" else "")})


class Exposition:
    """Renders a registry as generate_latest does, reusing each series' prefix."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # family name -> (constant labels, label values -> line prefix(es)):
        # a counter's or gauge's prefix is one string, a histogram's a tuple.
        # Keyed by the label-value tuples prometheus_client keys its children
        # by, so the cache holds no objects the garbage collector must walk
        # (it had 34 000 tuples holding children at 1000 probes: a tenth of
        # a full collection's pause).
        self._prefixes: dict[str, tuple[tuple[tuple[str, str], ...],
                                        dict[tuple[str, ...], Any]]] = {}

    def _const(self) -> tuple[tuple[str, str], ...]:
        labels: dict[str, str] = getattr(self.registry, "const_labels", {})
        return tuple(labels.items())

    def render(self, names: frozenset[str] | None = None) -> str:
        """The whole exposition in one call (tests, and small registries);
        ``names``: only these samples (``/metrics?name[]=...``)."""
        return "".join(self._chunks(None, names))

    async def stream(self, names: frozenset[str] | None = None) -> AsyncIterator[str]:
        """The exposition in chunks, each costing about SLICE_SECONDS, with
        the loop run between them."""
        for chunk in self._chunks(SLICE_SECONDS, names):
            yield chunk
            await asyncio.sleep(0)

    # -- rendering --------------------------------------------------------
    def _chunks(self, time_budget: float | None,
                names: frozenset[str] | None) -> Iterator[str]:
        const = self._const()
        out: list[str] = []
        began = time.perf_counter()
        deadline = None if time_budget is None else began + time_budget
        budget = time_budget or 0.0  # read only while a deadline is set
        with self.registry._lock:
            collectors = list(self.registry._collector_to_names)
        for collector in collectors:
            if isinstance(collector, (Counter, Gauge, Histogram)):
                wanted = None
                if names is not None:
                    wanted = _sample_names(collector) & names
                    if not wanted:
                        continue
                for rendered, _ in enumerate(self._wrapper(collector, const, out, wanted), 1):
                    if deadline is not None and rendered % CHECK_EVERY == 0 \
                            and time.perf_counter() > deadline:
                        yield "".join(out)
                        out.clear()
                        now = time.perf_counter()
                        long = now - began > LONG_SCRAPE_SECONDS
                        deadline = now + (LONG_SLICE_SECONDS if long else budget)
            else:
                self._generic(collector, const, out, names)
        yield "".join(out)

    def _wrapper(self, wrapper: Any, const: tuple[tuple[str, str], ...],
                 out: list[str], wanted: frozenset[str] | None) -> Iterator[None]:
        """Append one metric family; yield after each series (a place to slice).
        ``wanted``: the family's sample names to print (None: all)."""
        kind = wrapper._type
        name = wrapper._name + ("_total" if kind == "counter" else "")
        doc = wrapper._documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        if wrapper._is_parent():
            with wrapper._lock:
                children = list(wrapper._metrics.items())
        else:
            children = [((), wrapper)]
        labelnames = wrapper._labelnames
        histogram = kind == "histogram"
        partial = histogram and wanted is not None and len(wanted) < 3
        final = out
        # Rebuilt from the live children on every render, so removed series
        # leave the cache too; prefixes depend only on the labels.
        kept_const, old = self._prefixes.get(name, ((), {}))
        if kept_const != const:
            old = {}
        cache: dict[tuple[str, ...], Any] = {}
        self._prefixes[name] = (const, cache)
        for values, child in children:
            if partial:  # some of _bucket, _count, _sum (rare: asked by hand)
                out = []
            prefixes = old.get(values)
            if prefixes is None:
                own = dict(zip(labelnames, values, strict=True))
                prefixes = self._build(wrapper, name, own, dict(const), histogram)
            cache[values] = prefixes
            # Values read without the metric's lock: every write happens on
            # this thread (the event loop), between two of our statements.
            if histogram:
                acc = 0.0
                buckets = child._buckets
                for i, prefix in enumerate(prefixes[:-2]):
                    acc += buckets[i]._value
                    out.append(prefix + _fmt(acc))
                out.append(prefixes[-2] + _fmt(acc))
                out.append(prefixes[-1] + _fmt(child._sum._value))
            else:
                out.append(prefixes + _fmt(child._value._value))
            if partial:
                assert wanted is not None  # (partial implies it)
                final.extend(line for line in out if _name_of(line) in wanted)
                out = final
            yield

    @staticmethod
    def _build(wrapper: Any, name: str, own: dict[str, str], const: dict[str, str],
               histogram: bool) -> Any:
        """A counter's or gauge's line prefix; a histogram's, one per line."""
        def line(sample: str, extra: dict[str, str]) -> str:
            # As ConstLabelRegistry.collect: constant labels win a clash.
            text = _label_text({**own, **extra, **const})
            return f"{sample}{{{text}}} " if text else f"{sample} "

        if not histogram:
            return line(name, {})
        base = wrapper._name
        if wrapper._upper_bounds[0] < 0:  # prometheus_client then omits _sum; we never do this
            raise ValueError("histograms with negative buckets are not rendered here")
        return (*(line(f"{base}_bucket", {"le": floatToGoString(b)})
                  for b in wrapper._upper_bounds),
                line(f"{base}_count", {}), line(f"{base}_sum", {}))

    @staticmethod
    def _generic(collector: Any, const: tuple[tuple[str, str], ...], out: list[str],
                 names: frozenset[str] | None) -> None:
        """Any other collector, formatted as generate_latest does (no const labels:
        the registry adds them only to what its collect() yields)."""
        from prometheus_client import generate_latest

        class _One:
            def collect(self) -> Any:
                for metric in collector.collect():
                    if const:
                        metric.samples = [s._replace(labels={**s.labels, **dict(const)})
                                          for s in metric.samples]
                    if names is not None:
                        metric.samples = [s for s in metric.samples if s.name in names]
                        if not metric.samples:
                            continue
                    yield metric

        out.append(generate_latest(_One()).decode())
