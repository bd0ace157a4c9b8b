"""The loader against generated adversarial files: each is refused with a message, or loads
into something `run` can use; never a traceback, never a hang.

The files are derived from config/example.yaml (every kind, every key) with a fixed seed:
values swapped for hostile ones (wrong types, huge, deep, control characters, durations
and ports out of range, device files), keys dropped, duplicated or renamed, the text cut
or spliced, YAML aliases, tags and merge keys. About 700 files in-process (a few seconds)
and a sample of them through `monitor validate` (exit 3 and a message on stderr).
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import Config, ConfigError, parse_config
from monitor.daemon import Daemon
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.probes import PROBE_KINDS
from monitor.redact import Redactor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "config" / "example.yaml").read_text()
ENVIRON = {"DB_PASSWORD": "fuzz-db-password", "PROBE_PASSWORD": "fuzz-probe-password",
           "API_TOKEN": "fuzz-api-token"}
SEED = 13
CASES = 700
# Judged past this, a file counts as a hang. The target is a second
# (`python -m tests.config.test_fuzz` prints the times); the test allows more
# because a loaded CI machine is not a hang.
CASE_SECONDS = 5.0
# Files run through `monitor validate` (each a Python start-up), a few at a time.
CLI_SAMPLE = 8
CLI_AT_ONCE = 4
DUMPER: type[Any] = yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper


def hostile_values(tmp: Path) -> list[Any]:
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)  # opening it would block until a writer comes
    return [
        None, True, 0, -1, 2**70, 1e308, float("nan"), "", " ", [], {}, ["x"], {"x": 1},
        [[["deep"]]], "x" * 300_000, "\x00\x01\x7f", "a\nb", "\u202eevil", "${UNSET_VAR}",
        "${", "$$", "$${X}", "99999999999d", "-1s", "0s", "1e9s", "1.5.5s", "http://h:99999/",
        "http://h:0/", "http://[::1/", "http://h/\r\nX: y", "ftp://h/", "https://u:p@h/",
        "127.0.0.1:0", "127.0.0.1:65536", ":80", "h:" + "9" * 5000, "(" * 3000 + ")" * 3000,
        "(?P<x", "*" * 10, "/dev/zero", "/dev/null", "/", str(fifo), "/proc/self/mem",
        "$2b$10$short", "$2b$31$" + "a" * 53, {"mode": "verify-full", "ca_file": "/dev/zero"},
        [1] * 10_000, list(range(50)),
    ]


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Where a mutation may go: the config's own structure, not inside hostile values."""
    yield prefix
    if len(prefix) >= 6:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:20]):
            yield from paths(item, (*prefix, index))


def get_parent(data: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    for part in path[:-1]:
        data = data[part]
    return data, path[-1]


def mutate_data(rng: random.Random, base: Any, values: list[Any]) -> str:
    data = copy.deepcopy(base)
    for _ in range(rng.randint(1, 4)):
        targets = [p for p in paths(data) if p]
        parent, key = get_parent(data, rng.choice(targets))
        action = rng.random()
        if action < 0.55:
            parent[key] = rng.choice(values)
        elif action < 0.65:
            parent[key] = deep(rng.randint(20, 60))
        elif action < 0.8 and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent[rng.choice(["unknown", "kind", "name", 7, "x" * 200])] = parent.pop(key)
        else:
            parent[key] = rng.choice(values)
    return yaml.dump(data, Dumper=DUMPER, allow_unicode=True, width=1_000_000)


def mutate_text(rng: random.Random, text: str) -> str:
    choice = rng.randrange(9)
    if choice == 0:  # cut anywhere
        return text[: rng.randrange(len(text))]
    if choice == 1:  # splice a chunk somewhere else
        a, b = sorted(rng.sample(range(len(text)), 2))
        at = rng.randrange(len(text))
        return text[:at] + text[a:b] + text[at:]
    if choice == 2:  # random bytes (as text)
        at = rng.randrange(len(text))
        noise = "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randint(1, 40)))
        return text[:at] + noise + text[at:]
    if choice == 3:  # billion laughs of random width and depth
        width, depth = rng.randint(2, 12), rng.randint(3, 9)
        lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
        return "\n".join(lines) + f"\nprobes: *l{depth - 1}\n"
    if choice == 4:  # an alias cycle through a mapping or a list
        return rng.choice(["a: &a {b: *a}\n", "probes: &p [{name: x, kind: *p}]\n",
                           "global: &g\n  labels: *g\n"]) + text
    if choice == 5:  # tags PyYAML's safe loader knows, or refuses
        tag = rng.choice(["!!python/object:os.system", "!!binary", "!!set", "!!timestamp",
                          "!!float", "!!int", "!!null", "!!omap", "!custom"])
        return text.replace("kind: http", f"kind: {tag} http", 1)
    if choice == 6:  # merge keys, legal YAML, some useful, some not
        return ("base: &base {kind: http, url: 'http://127.0.0.1/', interval: 1m}\n"
                + text.replace("probes:\n", "probes:\n  - {<<: *base, name: merged}\n"
                               "  - {<<: [*base, *base], name: merged}\n", 1))
    if choice == 7:  # a duplicate key
        return text.replace("  - name: backend-health\n",
                            "  - name: backend-health\n    name: again\n", 1)
    # brackets nested deeper than anyone writes
    levels = rng.randint(30, 3000)
    return "probes: " + "[" * levels + "]" * levels + "\n"


def generate(tmp: Path) -> list[tuple[str, str]]:
    rng = random.Random(SEED)
    base = yaml.safe_load(EXAMPLE)
    values = hostile_values(tmp)
    cases = []
    for index in range(CASES):
        text = mutate_text(rng, EXAMPLE) if index % 3 == 2 else mutate_data(rng, base, values)
        cases.append((f"case-{index:03d}", text))
    return cases


class TookTooLong(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expire(*_: object) -> None:
        raise TookTooLong

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def judge(name: str, text: str) -> Config | list[str]:
    """The loaded config, or the problems it was refused with (within CASE_SECONDS)."""
    try:
        with deadline(CASE_SECONDS):
            return parse_config(text, ENVIRON, source=name, kinds=PROBE_KINDS)
    except ConfigError as error:
        return error.problems
    except TookTooLong:
        pytest.fail(f"{name}: not judged within {CASE_SECONDS}s:\n{text[:500]}")


async def usable_by_run(config: Config, tmp_path: Path) -> None:
    """What `monitor run` builds from a config before it starts anything: every probe,
    its schedule and its TLS contexts (the daemon's own plan, nothing scheduled)."""
    daemon = Daemon(tmp_path / "unused.yaml", config, metrics=Metrics(ConstLabelRegistry()),
                    redactor=Redactor(config.secrets))
    plan = await daemon._plan(config, changed_only=False)
    assert len(plan.add) == len(config.probes)


async def test_generated_files_are_refused_with_a_message_or_usable(tmp_path: Path) -> None:
    """Each of ~700 generated files loads into a config `run` can use, or is refused with
    problems (no internal error), and none hangs."""
    refused = accepted = 0
    for name, text in generate(tmp_path):
        outcome = judge(name, text)
        if isinstance(outcome, Config):
            await usable_by_run(outcome, tmp_path)
            accepted += 1
            continue
        assert outcome, name
        assert all(p.strip() for p in outcome), name
        joined = "\n".join(outcome)
        assert "internal error" not in joined, f"{name}: {joined}"
        assert max(len(p) for p in outcome) <= 400, name
        assert "fuzz-db-password" not in joined, name
        refused += 1
    assert refused > CASES / 2  # the generator does make bad files
    assert accepted > 0  # and some survive, so the run-side check means something


async def test_monitor_validate_exits_3_with_a_message(tmp_path: Path) -> None:
    """A sample of the refused files through the CLI: exit 3, a message, no traceback."""
    sample = []
    for name, text in generate(tmp_path)[::7]:
        try:
            parse_config(text, ENVIRON, source=name, kinds=PROBE_KINDS)
        except ConfigError:
            path = tmp_path / f"{name}.yaml"
            path.write_text(text)
            sample.append(path)
        if len(sample) == CLI_SAMPLE:
            break
    assert len(sample) == CLI_SAMPLE
    slots = asyncio.Semaphore(CLI_AT_ONCE)

    async def validate(path: Path) -> tuple[Path, int | None, str]:
        async with slots:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor", "validate", "-c", str(path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **ENVIRON})
            _, err = await asyncio.wait_for(process.communicate(), timeout=60)
        return path, process.returncode, err.decode()

    for path, code, err in await asyncio.gather(*(validate(p) for p in sample)):
        assert code == 3, (path.name, err)
        assert f"{path}: invalid config:" in err, err
        assert "Traceback" not in err, err


if __name__ == "__main__":  # python -m tests.config.test_fuzz: how long judging takes
    import tempfile
    import time

    times = []
    for case_name, case_text in generate(Path(tempfile.mkdtemp())):
        started = time.perf_counter()
        judge(case_name, case_text)
        times.append((time.perf_counter() - started, case_name, len(case_text)))
    times.sort()
    print(f"{len(times)} files: median {times[len(times) // 2][0] * 1000:.1f} ms, "
          f"p99 {times[int(len(times) * 0.99)][0] * 1000:.1f} ms, slowest "
          f"{times[-1][0] * 1000:.1f} ms ({times[-1][1]}, {times[-1][2]} bytes); "
          f"load {os.getloadavg()[0]:.2f}")
