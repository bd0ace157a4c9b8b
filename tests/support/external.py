"""The line between tests: those that need a binary outside Python carry ``external``.

``pytest -m "not external"`` runs everything that needs only this package and
its Python dependencies; scripts/test.sh installs the binaries and runs all.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def needs(*binaries: str, install: str, optional: bool = False) -> Callable[[T], T]:
    """Mark a test ``external`` and skip it, naming the package, when a binary is missing.

    Under the test command a missing binary fails the test (tests/conftest.py),
    unless ``optional``: a binary the test command cannot install (kubectl is
    in no Debian 12 package of a usable version)."""
    missing = [name for name in binaries if shutil.which(name) is None]
    skip = pytest.mark.skipif(bool(missing),
                              reason=f"needs {', '.join(missing)} ({install})")

    def mark(test: T) -> T:
        marked: T = skip(pytest.mark.external(optional=optional)(test))
        return marked

    return mark
