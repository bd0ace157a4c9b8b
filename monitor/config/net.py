"""Transport options every kind that resolves names shares."""

from __future__ import annotations

from typing import Literal

# Which addresses of a name are used (monitor.net: the resolver policy).
# `any` (the default) takes both families in the resolver's order.
IpFamily = Literal["ipv4", "ipv6", "any"]

__all__ = ["IpFamily"]
