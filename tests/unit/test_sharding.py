"""monitor.sharding: a stable split of probes across replicas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

import pytest

from monitor.sharding import MAX_SHARDS, in_shard, parse_shard, select, shard_of

NAMES = [f"probe-{i}" for i in range(300)] + ["backend-health", "cloudsql", "golden-path"]


@dataclass(frozen=True)
class Named:
    name: str


def test_three_replicas_partition_the_probes() -> None:
    """Every probe runs on exactly one of 3 replicas: none lost, none doubled."""
    runs = Counter(name for index in range(3) for name in NAMES if in_shard(name, index, 3))
    assert set(runs) == set(NAMES)
    assert set(runs.values()) == {1}


def test_split_is_roughly_even() -> None:
    """300 names over 3 replicas land 100 +- 30 each (a hash, not one bucket)."""
    sizes = Counter(shard_of(name, 3) for name in NAMES)
    assert sorted(sizes) == [0, 1, 2]
    assert all(70 <= size <= 130 for size in sizes.values()), sizes


def test_select_keeps_config_order_and_partitions() -> None:
    """select() returns each replica's probes in config order; together they are all."""
    probes = [Named(n) for n in NAMES]
    parts = [select(probes, i, 3) for i in range(3)]
    for part in parts:
        assert list(part) == [p for p in probes if p in part]
    assert sorted(p.name for part in parts for p in part) == sorted(NAMES)


def test_one_shard_runs_everything() -> None:
    """--shard 0/1 is the unsharded daemon."""
    assert all(in_shard(name, 0, 1) for name in NAMES)


def test_stable_across_processes() -> None:
    """Processes with different hash seeds compute the same assignment."""
    code = (
        "import json, sys; from monitor.sharding import shard_of; "
        "print(json.dumps([shard_of(n, 3) for n in json.loads(sys.argv[1])]))"
    )
    expected = [shard_of(name, 3) for name in NAMES]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(NAMES)],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )
        assert json.loads(out.stdout) == expected


def test_known_values_pin_the_hash() -> None:
    """Pinned assignments: changing the hash would silently move probes between replicas."""
    names = ["backend-health", "cloudsql", "golden-path", "vpc-echo", "lb-consistency",
             "peak-load"]
    assert [shard_of(n, 3) for n in names] == [1, 2, 1, 2, 2, 1]
    assert [shard_of(n, 7) for n in names[:2]] == [4, 1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", (0, 1)), ("1/3", (1, 3)), ("2/3", (2, 3)), (" 4 / 5 ", (4, 5))],
    ids=["single", "middle", "last", "spaces"],
)
def test_parse_shard_accepts(text: str, expected: tuple[int, int]) -> None:
    """parse_shard reads INDEX/COUNT with a 0-based index."""
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3", "expects INDEX/COUNT"),
        ("a/3", "expects INDEX/COUNT"),
        ("-1/3", "expects INDEX/COUNT"),
        ("1/3/4", "expects INDEX/COUNT"),
        ("", "expects INDEX/COUNT"),
        ("3/3", "shard index 3 is out of range for 3 shards: use 0 to 2"),
        ("0/0", "shard count must be at least 1"),
        (f"0/{MAX_SHARDS + 1}", "above the cap"),
    ],
    ids=["no-slash", "letters", "negative", "three-parts", "empty", "index-too-big",
         "zero-count", "over-cap"],
)
def test_parse_shard_rejects(text: str, message: str) -> None:
    """Bad --shard values fail with a sentence saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_shard(text)


def test_in_shard_rejects_bad_index() -> None:
    """in_shard refuses an index outside 0..count-1 rather than returning False."""
    with pytest.raises(ValueError, match="out of range"):
        in_shard("x", 3, 3)
