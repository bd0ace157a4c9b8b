"""Probe configs built the way users build them: YAML text through the real loader.

Building a model directly (``HttpProbeConfig(...)``) skips what the loader
adds: interpolation, the defaults from ``global``, the cross-field checks
(timeout below interval, sql's app_timeout), secrets. :func:`probe_config`
writes the entry as YAML (``yaml.safe_dump``: no hand-written quoting) and
loads it with :func:`monitor.config.parse_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from monitor.config import Config, parse_config
from monitor.probes import PROBE_KINDS

# A short name per kind, so that a test gives only what it is about.
DEFAULT_NAMES = {"http": "web", "tls": "cert", "tcp": "tcp", "lb": "edge", "burst": "vpc",
                 "load": "peak", "sql": "db", "journey": "golden"}


def config_text(*probes: Mapping[str, Any], **sections: Any) -> str:
    """A whole config file: ``probes`` and any other top-level section (``global``...)."""
    return yaml.safe_dump({**sections, "probes": [dict(p) for p in probes]}, sort_keys=False)


def load(*probes: Mapping[str, Any], environ: Mapping[str, str] | None = None,
         **sections: Any) -> Config:
    """A whole Config through the loader (``environ`` fills ``${NAME}``; default none)."""
    return parse_config(config_text(*probes, **sections), dict(environ or {}), source="<test>",
                        kinds=PROBE_KINDS)


def probe_config(kind: str, *, environ: Mapping[str, str] | None = None, **fields: Any) -> Any:
    """One probe of ``kind`` through the loader; ``fields`` as they would be in YAML."""
    entry = {"name": DEFAULT_NAMES.get(kind, kind), "kind": kind, **fields}
    return load(entry, environ=environ).probes[0]
