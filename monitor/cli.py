"""Command line: run | check | validate | demo (docs/architecture.md, CLI)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from monitor import __version__
from monitor.config import ConfigError, ConfigSource
from monitor.exitcodes import ExitCode
from monitor.logs import configure_logging
from monitor.redact import Redactor

log = structlog.get_logger("monitor.cli")


def config_path(value: str | None) -> Path:
    """-c, else $MONITOR_CONFIG, else ./monitor.yaml."""
    return Path(value or os.environ.get("MONITOR_CONFIG") or "monitor.yaml")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="monitor", description="Synthetic monitoring daemon for every layer behind a 503.",
    )
    top.add_argument("--version", action="version", version=f"monitor {__version__}")
    top.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    sub = top.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG, "
                       "then ./monitor.yaml)")

    run = sub.add_parser("run", help="run the daemon")
    with_config(run)
    run.add_argument("--shard", metavar="I/N",
                     help="run only the probes whose stable name hash falls in shard I of N")
    run.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                     help="event loop: uvloop when installed (pip install 'monitor[uvloop]'), "
                     "else asyncio's own (default: auto)")

    check = sub.add_parser("check", help="run the probes once (or for --duration) and judge")
    with_config(check)
    check.add_argument("--level", type=int, choices=[1, 2, 3, 4],
                       help="run only probes of levels 1..LEVEL")
    check.add_argument("--probe", action="append", metavar="NAME",
                       help="run only this probe (repeatable)")
    check.add_argument("--duration", metavar="D",
                       help="sample repeatedly for D (e.g. 5m) and judge failure rates")
    check.add_argument("--every", metavar="T",
                       help="with --duration: sample every T instead of each probe's interval")
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.add_argument("--debug", action="store_true",
                       help="print each run's trace (phases, request and response heads)")

    validate = sub.add_parser("validate", help="validate a config file")
    with_config(validate)

    demo = sub.add_parser("demo", help="start the simulated stack and the daemon probing it")
    demo.add_argument("--port", type=int, default=9469, help="the daemon's port")
    demo.add_argument("--postgres", metavar="DSN",
                      help="also probe this PostgreSQL (e.g. postgresql://user@127.0.0.1/db)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    redactor = Redactor()
    configure_logging(args.log_level, redactor)
    if args.command == "demo":
        from monitor.demo.stack import run_demo

        return run_demo(port=args.port, postgres_dsn=args.postgres, redactor=redactor)

    from monitor.probes import PROBE_KINDS  # the kinds (and their libraries) load only here

    path = config_path(args.config)
    source = ConfigSource.file(path, kinds=PROBE_KINDS)
    try:
        config = source.load()
    except ConfigError as error:
        print(f"{path}: invalid config:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return ExitCode.CONFIG
    redactor.update(config.secrets)

    if args.command == "validate":
        print(f"{path}: valid, {len(config.probes)} probes")
        return ExitCode.OK
    if args.command == "check":
        from monitor.check import CheckOptions, run_check

        try:
            options = CheckOptions.from_args(args)
        except ValueError as error:
            print(f"monitor check: {error}", file=sys.stderr)
            return ExitCode.CONFIG
        return run_check(config, options, redactor)
    shard = None
    if args.shard:
        from monitor.sharding import parse_shard

        try:
            shard = parse_shard(args.shard)
        except ValueError as error:
            print(f"monitor run: --shard: {error}", file=sys.stderr)
            return ExitCode.CONFIG
    try:
        factory = loop_factory(args.loop)
    except ImportError:
        print("monitor run: --loop uvloop: uvloop is not installed "
              "(pip install 'monitor[uvloop]')", file=sys.stderr)
        return ExitCode.CONFIG
    from monitor.app import serve

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(source, config, redactor, shard=shard))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `run` uses. uvloop costs less CPU per probe run and per
    scrape (README, Performance); without it asyncio's loop does the same work.
    Raise ImportError when uvloop is asked for and missing."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop
