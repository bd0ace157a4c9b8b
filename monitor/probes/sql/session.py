"""What the sql probe shares with its two driver modules.

``Marks`` is the timeline of one connect: the driver hooks (postgres.py,
mysql.py, and the TLS hook in tls.py) write their timestamps into it, the
probe reads phases out of it. ``Session`` is the little a run needs from an
open connection, whichever driver opened it.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field
from typing import Protocol

from monitor.net.exhaustion import Lookup

# Stages a connect waits for, in order; ``Marks.stage`` holds the current one.
STAGE_TEXT = {
    "dns": "the host's DNS lookup did not finish",
    "tcp": "the TCP connect did not complete",
    "greeting": "the server sent no greeting",
    "tls": "the TLS handshake did not complete",
    "startup": "the server did not finish the startup (authentication and session set-up)",
    "ready": "the connect did not complete",
}


@dataclass(slots=True)
class Marks:
    """Event-loop timestamps of one connect; ``stage`` is what it waits for.

    ``events`` lists the hooks that fired, in order: the contract tests
    (tests/integration/sql/test_driver_contract.py) pin that order for each
    driver, so that an update that moves a hook fails there, loudly.
    """

    start: float
    tcp_done: float | None = None
    tls_start: float | None = None
    tls_done: float | None = None
    done: float | None = None
    stage: str = "tcp"  # dns | tcp | greeting | tls | startup | ready
    first_bytes: bytes | None = None  # what the server said first (PostgreSQL)
    events: list[str] = field(default_factory=list)
    # The name TLS sends (SNI) and verifies, whatever address the driver dials.
    server_name: str | None = None
    # The host's DNS lookup: whether it ever got a thread (monitor.net.exhaustion).
    lookup: Lookup | None = None

    def mark(self, event: str) -> float:
        """Record ``event`` now; return the loop time."""
        now = asyncio.get_running_loop().time()
        self.events.append(event)
        return now

    def phases(self) -> dict[str, float]:
        """connect / tls / startup of a completed connect."""
        assert self.done is not None and self.tcp_done is not None
        tls = 0.0
        if self.tls_start is not None and self.tls_done is not None:
            tls = self.tls_done - self.tls_start
        found = {"connect": self.tcp_done - self.start}
        if self.tls_done is not None:
            found["tls"] = tls
        found["startup"] = max(0.0, self.done - self.start - found["connect"] - tls)
        return found


# The connect under way in this task: the TLS hook (tls.py) finds its marks
# here, since an SSL object knows nothing of the connection it serves.
CURRENT: contextvars.ContextVar[Marks | None] = contextvars.ContextVar(
    "monitor_sql_marks", default=None)


@dataclass(slots=True)
class Headroom:
    used: int | None
    max: int | None
    # Why ``used`` is missing or only approximate (no rights), else "";
    # ``note_kind`` names the case, so that the log says it once per kind.
    note: str = ""
    note_kind: str = ""


class Session(Protocol):
    async def limit_statements(self, seconds: float) -> None: ...

    async def execute(self, query: str) -> None: ...

    async def headroom(self) -> Headroom: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


class NotTheProtocol(Exception):
    """The peer answered, but not as the database would."""


class TlsNotOffered(Exception):
    """TLS was asked for and the server does not offer it."""


class DriverContractError(RuntimeError):
    """A driver hook did not fire: the installed driver is not one the hooks
    were written for (pyproject.toml pins the tested versions)."""


def check_complete(marks: Marks, driver: str, version: str, tls: bool) -> None:
    """Raise DriverContractError unless every hook of a connect fired."""
    missing = [name for name, value in (("tcp", marks.tcp_done),
                                        ("tls_start", marks.tls_start if tls else 0.0),
                                        ("tls_done", marks.tls_done if tls else 0.0))
               if value is None]
    if missing:
        raise DriverContractError(
            f"{driver} {version}: the connect finished but the timing hooks "
            f"{', '.join(missing)} did not fire (seen: {', '.join(marks.events) or 'none'}); "
            "this driver version is not the one monitor was tested with")
