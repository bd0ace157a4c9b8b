"""`kind: tls`: a handshake and the certificate chain it presents."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from monitor.config.common import ProbeBase, TLSOptions
from monitor.config.net import IpFamily
from monitor.config.types import HostPort


class TlsProbeConfig(ProbeBase):
    kind: Literal["tls"]
    target: HostPort
    tls: TLSOptions = TLSOptions()
    min_days_left: Annotated[float, Field(ge=0)] = 14
    ip_family: IpFamily = "any"

    def info_target(self) -> str:
        return self.target
