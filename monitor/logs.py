"""structlog set-up: JSON off a TTY (Cloud Logging reads `severity`), console on one."""

from __future__ import annotations

import logging
import sys
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
    # Libraries log through the standard library (APScheduler, aiohttp): the
    # same renderer, redaction and severity, warnings and above only.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=processors[1:-1],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # The scheduler's own skip warnings repeat ours ("probe run skipped").
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
