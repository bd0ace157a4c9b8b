"""One resolver for every kind (the policy is in the package docstring)."""

from __future__ import annotations

import functools
import ipaddress
import socket

from monitor.config.net import IpFamily
from monitor.net.exhaustion import Lookup
from monitor.probes.base import ProbeFailure

FAMILIES: dict[str, socket.AddressFamily] = {
    "ipv4": socket.AF_INET,
    "ipv6": socket.AF_INET6,
    "any": socket.AF_UNSPEC,
}


@functools.lru_cache(maxsize=1024)
def ip_literal(host: str) -> int | None:
    """4 or 6 when ``host`` is an IP address literal, else None."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).version
    except ValueError:
        return None


async def resolve(host: str, port: int, family: IpFamily = "any",
                  lookup: Lookup | None = None) -> list[str]:
    """Every address of ``host`` of ``family``, in resolver order, deduplicated.

    An IP literal is returned as is (no lookup), unless it is of the other
    family. ``lookup`` lets the caller tell, on a timeout, whether the lookup
    ever started (see :mod:`monitor.net.exhaustion`). Raises ProbeFailure:
    ``dns`` (no such name, no address of the family), or ``error`` (ours).
    The caller bounds the time.
    """
    version = ip_literal(host)
    if version is not None:
        if family != "any" and family != f"ipv{version}":
            raise ProbeFailure("dns", f"{host} is an IPv{version} address, but ip_family "
                                      f"is {family}")
        return [host]
    lookup = lookup or Lookup()
    try:
        infos = await lookup.getaddrinfo(host, port, FAMILIES[family])
    except socket.gaierror as exc:
        raise ProbeFailure("dns", f"cannot resolve {host}: {exc.strerror or exc}") from None
    except UnicodeError as exc:  # an invalid IDNA name
        raise ProbeFailure("dns", f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        which = "" if family == "any" else f" {family}"
        raise ProbeFailure("dns", f"{host} resolves to no{which} address")
    return addresses


def sort_addresses(addresses: list[str]) -> list[str]:
    """IPv4 first, each sorted: an index keeps meaning one address while DNS
    rotates (``kind: lb`` labels addresses by index)."""
    parsed = {ipaddress.ip_address(a.split("%")[0]) for a in addresses}
    return [str(a) for a in sorted(parsed, key=lambda a: (a.version, a))]


__all__ = ["FAMILIES", "IpFamily", "ip_literal", "resolve", "sort_addresses"]
