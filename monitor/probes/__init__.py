"""The probe kinds: one module each, one explicit registry.

``KINDS`` is the only list of kinds: each probe class is generic over its
config model, and the config's union of models (``PROBE_KINDS``, which the
loader validates probes with) is derived from it. Adding a kind = a config
model in ``monitor/config/<kind>.py``, a module here, one line in ``KINDS``,
tests, and a section in the docs (docs/architecture.md, Adding a kind).
"""

from __future__ import annotations

from typing import Any, Final

from monitor.config import ProbeConfig, ProbeKinds
from monitor.probes.base import Probe
from monitor.probes.burst import BurstProbe
from monitor.probes.http import HttpProbe
from monitor.probes.journey import JourneyProbe
from monitor.probes.lb import LbProbe
from monitor.probes.load import LoadProbe
from monitor.probes.sql import SqlProbe
from monitor.probes.tcp import TcpProbe
from monitor.probes.tls import TlsProbe

KINDS: dict[str, type[Probe[Any]]] = {
    "burst": BurstProbe,
    "http": HttpProbe,
    "journey": JourneyProbe,
    "lb": LbProbe,
    "load": LoadProbe,
    "sql": SqlProbe,
    "tcp": TcpProbe,
    "tls": TlsProbe,
}

# What a config may name: the models of KINDS, as one discriminated union.
PROBE_KINDS: Final = ProbeKinds(probe.config_model() for probe in KINDS.values())
if PROBE_KINDS.names != tuple(KINDS):  # a bug of ours, found at import, not on a config
    raise TypeError(f"KINDS {tuple(KINDS)} are named other than their config models' kinds "
                    f"{PROBE_KINDS.names}")


def build_probe(config: ProbeConfig) -> Probe[Any]:
    """The probe of ``config``'s kind (its class is generic over that config model)."""
    return KINDS[config.kind](config)
