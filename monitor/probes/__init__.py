"""The probe kinds: one module each, one explicit registry.

Adding a kind = a config model in ``monitor/config/<kind>.py`` (plus one
line in ``monitor/config/models.py:ProbeConfig``), a module here, one line
in ``KINDS``, tests, and a section in the docs.
"""

from __future__ import annotations

from typing import Any

from monitor.config import ProbeConfig
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


def build_probe(config: ProbeConfig) -> Probe[Any]:
    """The probe of ``config``'s kind (its class is generic over that config model)."""
    return KINDS[config.kind](config)
