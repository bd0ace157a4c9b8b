"""Where a config comes from: a file or YAML text, and the environment ``${NAME}`` reads.

The daemon keeps its source and reloads by reading it again, so whoever
starts it (the CLI, the demo, a test) says once where the config lives and
which variables it may read; nobody has to write into ``os.environ``.
"""

from __future__ import annotations

import os
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.config.loader import load_config, parse_config
from monitor.config.models import Config, ProbeKinds


@dataclass(frozen=True, kw_only=True)
class ConfigSource:
    """A config file (``path``) or text (``text``), plus variables over the process'.

    ``environ`` entries take precedence over ``os.environ``, which is read
    afresh at every load (as a plain path always was). ``kinds`` are the probe
    kinds it may use (``monitor.probes.PROBE_KINDS``).
    """

    kinds: ProbeKinds
    path: Path | None = None
    text: str | None = None
    environ: Mapping[str, str] | None = None
    name: str = "<config>"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.text is None):
            raise ValueError("a config source is a path or a text, not both")

    @classmethod
    def file(cls, path: str | Path, environ: Mapping[str, str] | None = None, *,
             kinds: ProbeKinds) -> ConfigSource:
        return cls(path=Path(path), environ=environ, name=str(path), kinds=kinds)

    @classmethod
    def of(cls, source: ConfigSource | str | Path, *, kinds: ProbeKinds) -> ConfigSource:
        return source if isinstance(source, ConfigSource) else cls.file(source, kinds=kinds)

    def variables(self) -> Mapping[str, str]:
        if self.environ is None:
            return os.environ
        return ChainMap(dict(self.environ), os.environ)

    def load(self) -> Config:
        """Read and validate the config; raise ConfigError listing every problem."""
        if self.path is not None:
            return load_config(self.path, self.variables(), kinds=self.kinds)
        assert self.text is not None
        return parse_config(self.text, self.variables(), source=self.name, kinds=self.kinds)

    def __str__(self) -> str:
        return self.name
