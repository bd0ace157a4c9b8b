"""structlog set-up: JSON off a TTY (Cloud Logging reads `severity`), console on one."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

from monitor.redact import Redactor


def configure_logging(level: str = "info", redactor: Redactor | None = None,
                      *, json: bool | None = None) -> None:
    redactor = redactor or Redactor()
    as_json = not sys.stderr.isatty() if json is None else json

    def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            event[key] = redactor.value(value)
        return event

    def severity(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        # Cloud Logging maps `severity` to its levels; `level` stays for people.
        event["severity"] = method.upper().replace("EXCEPTION", "ERROR")
        return event

    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    if as_json:
        processors.append(severity)
    processors.append(renderer)
    # Libraries log through the standard library (aiohttp): the
    # same renderer, redaction and severity, warnings and above only.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=processors[1:-1],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class Throttle:
    """At most one log line per key and interval, saying how many were held back.

    For events a peer can repeat at will (malformed requests, our own
    exhaustion, the accept loop out of file descriptors): one line a minute
    tells an operator what happens without letting anyone fill the disk.
    """

    def __init__(self, interval: float = 60.0, clock: Any = None) -> None:
        self.interval = interval
        self._clock = clock or time.monotonic
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None: stay quiet; else log now, with this many held back since."""
        now = self._clock()
        if now < self._next.get(key, float("-inf")):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._next[key] = now + self.interval
        if len(self._next) > 1024:  # keys come from a fixed list; stay bounded anyway
            self._next = {key: self._next[key]}
        return self._held.pop(key, 0)
