"""The whole config: `global`, `server` and the probes (DESIGN.md, Config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, model_validator

from monitor.config.burst import BurstProbeConfig
from monitor.config.common import Strict
from monitor.config.http import HttpProbeConfig
from monitor.config.journey import JourneyProbeConfig
from monitor.config.lb import LbProbeConfig
from monitor.config.load import LoadProbeConfig
from monitor.config.sql import SqlProbeConfig
from monitor.config.tcp import TcpProbeConfig
from monitor.config.tls import TlsProbeConfig
from monitor.config.types import Duration, Ratio

# One line per kind (with monitor/probes/__init__.py:KINDS).
ProbeConfig = Annotated[
    BurstProbeConfig
    | HttpProbeConfig
    | JourneyProbeConfig
    | LbProbeConfig
    | LoadProbeConfig
    | SqlProbeConfig
    | TcpProbeConfig
    | TlsProbeConfig,
    Field(discriminator="kind"),
]
PROBE_ADAPTER: TypeAdapter[Any] = TypeAdapter(ProbeConfig)

# Label names we set ourselves cannot be constant labels too.
RESERVED_LABELS = frozenset({
    "probe", "kind", "level", "layer", "service", "target", "result", "reason", "code",
    "origin", "phase", "step", "outcome", "backend", "address", "state", "version",
    "job", "instance", "le", "quantile",
})


class GlobalConfig(Strict):
    interval: Duration = 30.0
    timeout: Duration = 10.0
    jitter: Annotated[Ratio, Field(le=0.5)] = 0.1
    labels: dict[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")], str] = Field(
        default_factory=dict
    )
    # The verdict window of the daemon (DESIGN.md, Verdict).
    verdict_window: Duration = 900.0

    @model_validator(mode="after")
    def _labels_free(self) -> GlobalConfig:
        taken = sorted(set(self.labels) & RESERVED_LABELS)
        if taken:
            raise ValueError(f"labels {', '.join(taken)} are set by monitor itself")
        return self


class ServerTLS(Strict):
    cert_file: Path
    key_file: Path


class ServerConfig(Strict):
    listen: str = "0.0.0.0:9469"
    # name -> bcrypt hash, as in Prometheus' web config.
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    tls: ServerTLS | None = None

    @model_validator(mode="after")
    def _check(self) -> ServerConfig:
        _, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"listen must be host:port, got {self.listen!r}")
        for user, hashed in self.basic_auth_users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"basic_auth_users.{user} must be a bcrypt hash")
        return self


class Config(Strict):
    """A loaded, validated config. ``secrets`` lists values never to print."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    server: ServerConfig = Field(default_factory=ServerConfig)
    probes: tuple[ProbeConfig, ...] = ()
    secrets: frozenset[str] = Field(default=frozenset(), exclude=True, repr=False)

    def probe(self, name: str) -> Any:
        for probe in self.probes:
            if probe.name == name:
                return probe
        raise KeyError(name)
