"""Split probes across replicas: `monitor run --shard i/n` (docs/deploy-kubernetes.md).

Replica ``i`` of ``n`` runs exactly the probes whose name hashes to ``i``.
The hash is SHA-256 of the probe name, so every replica, every process and
every Python version agrees on the split without talking to each other
(Python's built-in ``hash()`` is salted per process and would not).

Adding or removing a probe moves only that probe. Changing ``n`` reshuffles
about ``1 - 1/n`` of the probes, which is harmless: probes keep no state
across runs beyond their metrics, and their series move to another replica.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Protocol, TypeVar

# A StatefulSet of thousands of replicas is not a use case; a cap catches typos.
MAX_SHARDS = 1024
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(name: str, count: int) -> int:
    """The shard (0-based) that runs the probe called ``name``."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    # 8 bytes are plenty: the modulo bias at count <= 1024 is below 1e-16.
    return int.from_bytes(digest[:8], "big") % count


def in_shard(name: str, index: int, count: int) -> bool:
    """True when replica ``index`` of ``count`` runs the probe called ``name``."""
    _check(index, count)
    return shard_of(name, count) == index


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (as given to ``--shard``) into ``(i, n)``, 0 <= i < n."""
    match = _SHARD.fullmatch(text)
    if match is None:
        raise ValueError(
            f"--shard expects INDEX/COUNT with a 0-based index, such as 0/3, got {text!r}"
        )
    index, count = int(match.group(1)), int(match.group(2))
    _check(index, count)
    return index, count


def _check(index: int, count: int) -> None:
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    if count > MAX_SHARDS:
        raise ValueError(f"shard count {count} is above the cap of {MAX_SHARDS}")
    if not 0 <= index < count:
        raise ValueError(
            f"shard index {index} is out of range for {count} shards: "
            f"use 0 to {count - 1} (indexes are 0-based, like StatefulSet ordinals)"
        )


class _Named(Protocol):
    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=_Named)


def select(probes: Iterable[P], index: int, count: int) -> tuple[P, ...]:
    """The probes replica ``index`` of ``count`` runs, in their config order."""
    _check(index, count)
    return tuple(p for p in probes if shard_of(p.name, count) == index)
