"""`kind: tcp`: one connection, optionally a few bytes sent and expected back."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from monitor.config.common import ProbeBase
from monitor.config.net import IpFamily
from monitor.config.types import HostPort, Regex

# The answer is only searched, never kept: read at most this much of it.
MAX_READ_BYTES_CAP = 1024 * 1024
MAX_SEND_CHARS = 64 * 1024


class TcpProbeConfig(ProbeBase):
    kind: Literal["tcp"]
    target: HostPort
    # Text sent after connecting, UTF-8 encoded (YAML "\r\n" escapes work).
    send: Annotated[str, Field(max_length=MAX_SEND_CHARS)] | None = None
    # What the answer must contain: literal text, or a regex (matched against
    # the bytes read so far, decoded as latin-1 so every byte is one character).
    expect: Annotated[str, Field(min_length=1)] | None = None
    expect_regex: Regex | None = None
    max_read_bytes: Annotated[int, Field(ge=1, le=MAX_READ_BYTES_CAP)] = 64 * 1024
    ip_family: IpFamily = "any"

    def problems(self) -> list[tuple[str, str]]:
        found = super().problems()
        if self.expect is not None and self.expect_regex is not None:
            found.append(("expect_regex",
                          "give either expect (literal text) or expect_regex, not both"))
        return found

    def info_target(self) -> str:
        return self.target
