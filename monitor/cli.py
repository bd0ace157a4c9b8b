"""Command line: run | check | validate | demo (DESIGN.md, CLI)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from monitor import __version__
from monitor.config import Config, ConfigError, load_config
from monitor.logs import configure_logging
from monitor.redact import Redactor

EXIT_CONFIG = 3
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

    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"{path}: invalid config:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    redactor.update(config.secrets)

    if args.command == "validate":
        print(f"{path}: valid, {len(config.probes)} probes")
        return 0
    if args.command == "check":
        from monitor.check import CheckOptions, run_check

        try:
            options = CheckOptions.from_args(args)
        except ValueError as error:
            print(f"monitor check: {error}", file=sys.stderr)
            return EXIT_CONFIG
        return run_check(config, options, redactor)
    shard = None
    if args.shard:
        from monitor.sharding import parse_shard

        try:
            shard = parse_shard(args.shard)
        except ValueError as error:
            print(f"monitor run: --shard: {error}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        factory = loop_factory(args.loop)
    except ImportError:
        print("monitor run: --loop uvloop: uvloop is not installed "
              "(pip install 'monitor[uvloop]')", file=sys.stderr)
        return EXIT_CONFIG
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(path, config, redactor, shard=shard))


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


async def serve(path: Path, config: Config, redactor: Redactor,
                shard: tuple[int, int] | None = None) -> int:
    """Run the daemon and its server until SIGTERM or SIGINT."""
    from monitor.daemon import Daemon
    from monitor.httpd import connection_cap, raise_fd_limit, start_server, throttled_loop_errors
    from monitor.metrics import ConstLabelRegistry, Metrics
    from monitor.server import listen_address, make_app, ssl_context

    loop = asyncio.get_running_loop()
    throttled_loop_errors(loop)
    fd_limit = raise_fd_limit()
    max_connections = connection_cap(config.server.max_connections, fd_limit)
    if max_connections < config.server.max_connections:
        log.warning("server.max_connections lowered to leave file descriptors to probes",
                    max_connections=max_connections, fd_limit=fd_limit)
    registry = ConstLabelRegistry()
    metrics = Metrics(registry)
    daemon = Daemon(path, config, metrics=metrics, redactor=redactor, shard=shard)
    host, port = listen_address(config.server)
    try:
        runner, site = await start_server(make_app(daemon), host, port,
                                          ssl_context=ssl_context(config.server),
                                          max_connections=max_connections)
    except OSError as error:
        log.error("cannot listen", address=f"{host}:{port}", error=str(error))
        return 1
    try:
        await daemon.start()
    except ConfigError as error:  # validated, yet a probe could not be built: say so
        log.error("cannot start the probes", problems=error.problems)
        await runner.cleanup()
        return EXIT_CONFIG
    log.info("serving", address=f"{host}:{site.port}", tls=config.server.tls is not None,
             max_connections=max_connections, loop=type(loop).__module__.split(".")[0])
    # What start-up built (config, probes, imports) lives as long as the
    # process: out of the collector's sight, a full collection no longer
    # walks it (bench/daemon.py measures the effect).
    gc.collect()
    gc.freeze()

    stop = asyncio.Event()
    reloads: set[asyncio.Task[list[str]]] = set()

    def on_hup() -> None:
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    log.info("stopping")
    await site.stop()  # accept nothing more
    for task in reloads:  # a reload still going would build probes nobody closes
        task.cancel()
    await asyncio.gather(*reloads, return_exceptions=True)
    await daemon.stop()  # cancels runs, closes the probes' connections
    await runner.cleanup()  # requests in flight get SHUTDOWN_GRACE, then every connection closes
    return 0
