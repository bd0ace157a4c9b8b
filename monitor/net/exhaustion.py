"""Our own exhaustion is never a target's failure.

When the daemon itself runs out of something, a probe measures nothing:

- file descriptors (``EMFILE`` for the process, ``ENFILE`` for the system),
- kernel buffers (``ENOBUFS``) or memory (``ENOMEM``),
- the default executor, whose threads run the DNS lookups: a lookup that
  never *started* before the deadline waited for a thread, not for DNS.

Such a run fails with reason ``error`` and a detail that says it is ours,
never ``connect_refused`` or ``dns``, which would blame the target (and page
its owners). The first case in a minute is logged as a warning; the rest
are counted in the next one.

:func:`own_exhaustion` is the one test every kind's connect path calls on
an exception; :class:`Lookup` is the DNS lookup that knows whether it ran.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import structlog

from monitor.logs import Throttle
from monitor.probes.base import ProbeFailure

log = structlog.get_logger("monitor.net.exhaustion")

OWN_ERRNOS = {
    errno.EMFILE: "out of file descriptors (EMFILE: the process limit)",
    errno.ENFILE: "out of file descriptors (ENFILE: the system limit)",
    errno.ENOBUFS: "out of kernel buffer space (ENOBUFS)",
    errno.ENOMEM: "out of memory (ENOMEM)",
}
_THROTTLE = Throttle()


def own_exhaustion(exc: BaseException, doing: str = "connecting") -> ProbeFailure | None:
    """A ProbeFailure("error") when ``exc`` (or what caused it) is our own
    lack of resources, else None. Logs the first one a minute."""
    for item in _chain(exc):
        code = getattr(item, "errno", None)
        if isinstance(item, OSError) and code in OWN_ERRNOS:
            return _ours(f"{OWN_ERRNOS[code]} while {doing}", errno.errorcode[code])
    return None


def executor_full(host: str, timeout: float) -> ProbeFailure:
    """The failure for a DNS lookup of ``host`` that never started."""
    return _ours(f"the DNS lookup of {host} never started within {timeout:.3g}s: every "
                 "thread of the executor that runs lookups was busy", "executor")


def _ours(what: str, kind: str) -> ProbeFailure:
    held = _THROTTLE.allow(kind)
    if held is not None:
        log.warning("probe could not run: the daemon itself is out of resources",
                    what=what, held_back=held)
    return ProbeFailure("error", f"ours, not the target's: {what}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and aiohttp's ``os_error`` (bounded)."""
    found: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(found) < 8:
        item = todo.pop()
        if not isinstance(item, BaseException) or item in found:
            continue
        found.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "os_error", None)]
    return found


class Lookup:
    """One getaddrinfo on the default executor (as ``loop.getaddrinfo`` does),
    noting whether a thread ever picked it up."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False

    async def getaddrinfo(self, host: str, port: int,
                          family: int = socket.AF_UNSPEC) -> list[Any]:
        def lookup() -> list[Any]:
            self.started = True  # a bool store: safe across threads under the GIL
            return socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, lookup)
        except OSError as exc:
            if isinstance(exc, socket.gaierror):
                raise
            # EAI_SYSTEM comes as a plain OSError (EMFILE reading /etc/hosts).
            raise own_exhaustion(exc, f"resolving {host}") or exc from None
