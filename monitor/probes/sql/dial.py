"""The sql probe's host through the transport layer's resolver and policy.

Neither driver takes a socket, and each resolves a name on its own (on the
loop's executor, with no way to tell a lookup that waited for a thread
from a slow DNS server). So the probe resolves the host itself, with
:func:`monitor.net.resolve.resolve` (``ip_family``, the lookup that knows
whether it started), and hands the driver one address at a time, in the
resolver's order, until one accepts the TCP connect: the policy of every
kind (monitor/net/__init__.py), within the connect's one deadline. Moving
on is not a retry: the driver had not connected, so nothing was sent.
When every address fails, the first address's reason is the run's, and
the detail lists each.

TLS still sends and verifies the configured name (or ``tls.server_name``),
not the address: the probe's context substitutes ``Marks.server_name``
for the name the driver passes (tls.py). Both drivers pass the host they
were given as the TLS server name (asyncpg: ``start_tls(...,
server_hostname=host)``; aiomysql: ``server_hostname=self._host``), so
giving them an address alone would verify the address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from monitor.config.net import IpFamily
from monitor.net.connect import format_address
from monitor.net.errors import classify
from monitor.net.exhaustion import Lookup
from monitor.net.resolve import resolve
from monitor.probes.base import ProbeFailure
from monitor.probes.sql.session import Marks

S = TypeVar("S")


async def addresses_of(host: str, port: int, family: IpFamily, marks: Marks) -> list[str]:
    """The addresses to try (an IP literal as is), with ``marks`` at stage dns
    meanwhile. Raises ProbeFailure (``dns``, or ``error`` when that is ours)."""
    marks.stage = "dns"
    marks.lookup = Lookup()
    addresses = await resolve(host, port, family, marks.lookup)
    marks.stage = "tcp"
    return addresses


async def first_that_accepts(addresses: list[str], port: int, marks: Marks,
                             attempt: Callable[[str], Awaitable[S]]) -> S:
    """``attempt(address)`` for each address in order, until one gets past the
    TCP connect; whatever happens after that is the run's outcome."""
    failures: list[ProbeFailure] = []
    for address in addresses:
        try:
            return await attempt(address)
        except Exception as exc:
            cause = _tcp_failure(exc, marks)
            if cause is None:
                raise
            failure = classify(cause, "connect", format_address(address, port))
            if failure.reason == "error":  # ours: the other addresses would fail too
                raise failure from None
            failures.append(failure)
    first = failures[0]
    if len(failures) == 1:
        raise first
    raise ProbeFailure(first.reason, "; ".join(f.detail for f in failures))


def _tcp_failure(exc: BaseException, marks: Marks) -> OSError | None:
    """The OSError of a failed TCP connect (aiomysql wraps it in its error
    2003), or None when the connect got further than that."""
    if marks.tcp_done is not None:
        return None
    item: BaseException | None = exc
    for _ in range(4):
        if item is None:
            break
        if isinstance(item, OSError):
            return item
        item = item.__cause__
    return None


__all__ = ["addresses_of", "first_that_accepts"]
