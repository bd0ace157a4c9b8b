"""The wiring: a config source -> metrics registry, daemon, server, signals.

`monitor run` and `monitor demo` both start the daemon here, so there is one
way to run it. Everything below (daemon, server, probes) gets what it needs
passed in; nothing reads global state but the signal handlers installed here.
"""

from __future__ import annotations

import asyncio
import gc
import signal

import structlog

from monitor.config import Config, ConfigError, ConfigSource
from monitor.daemon import Daemon
from monitor.exitcodes import ExitCode
from monitor.httpd import connection_cap, raise_fd_limit, start_server, throttled_loop_errors
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.redact import Redactor
from monitor.server import listen_address, make_app, ssl_context

log = structlog.get_logger("monitor.app")
GC_YOUNG_THRESHOLD = 10_000


async def serve(source: ConfigSource, config: Config, redactor: Redactor,
                shard: tuple[int, int] | None = None) -> ExitCode:
    """Run the daemon and its server until SIGTERM or SIGINT.

    ``config`` is what ``source`` loaded (the caller reports its problems);
    SIGHUP and ``POST /-/reload`` load ``source`` again.
    """
    loop = asyncio.get_running_loop()
    throttled_loop_errors(loop)
    fd_limit = raise_fd_limit()
    max_connections = connection_cap(config.server.max_connections, fd_limit)
    if max_connections < config.server.max_connections:
        log.warning("server.max_connections lowered to leave file descriptors to probes",
                    max_connections=max_connections, fd_limit=fd_limit)
    registry = ConstLabelRegistry()
    metrics = Metrics(registry)
    daemon = Daemon(source, config, metrics=metrics, redactor=redactor, shard=shard)
    host, port = listen_address(config.server)
    try:
        runner, site = await start_server(make_app(daemon), host, port,
                                          ssl_context=ssl_context(config.server),
                                          max_connections=max_connections)
    except OSError as error:
        log.error("cannot listen", address=f"{host}:{port}", error=str(error))
        return ExitCode.BROKEN
    try:
        await daemon.start()
    except ConfigError as error:  # validated, yet a probe could not be built: say so
        log.error("cannot start the probes", problems=error.problems)
        await runner.cleanup()
        return ExitCode.CONFIG
    log.info("serving", address=f"{host}:{site.port}", tls=config.server.tls is not None,
             max_connections=max_connections, loop=type(loop).__module__.split(".")[0])
    # What start-up built (config, probes, imports) lives as long as the
    # process: out of the collector's sight, a full collection no longer
    # walks it (bench/daemon.py measures the effect).
    gc.collect()
    gc.freeze()
    # A young-generation collection every GC_YOUNG_THRESHOLD net container
    # allocations, not 700: runs in flight alone hold several hundred, so the
    # default collected ~25 times a second at 2000 runs/s for nothing (runs
    # make almost no cyclic garbage). Two runs back to back, one core, 25 s:
    # 8 collections instead of 613, collector CPU 39 ms instead of 400 ms.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    stop = asyncio.Event()
    reloads: set[asyncio.Task[list[str]]] = set()

    def on_hup() -> None:
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopping")
    await site.stop()  # accept nothing more
    for task in reloads:  # a reload still going would build probes nobody closes
        task.cancel()
    await asyncio.gather(*reloads, return_exceptions=True)
    await daemon.stop()  # cancels runs, closes the probes' connections
    await runner.cleanup()  # requests in flight get SHUTDOWN_GRACE, then every connection closes
    return ExitCode.OK

