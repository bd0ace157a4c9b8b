"""`monitor demo`: the simulated services on loopback and the daemon probing them.

`DemoStack` starts the services (tests use it too); `run_demo` adds the
daemon (through `monitor.app`, as `monitor run` does) with the bundled config
(`demo.yaml`, a starting point to copy), prints where to look and how to
inject faults, and runs until stopped. The DEMO_* values the config reads
are the variables of its config source, never written into os.environ.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web

from monitor.app import serve
from monitor.config import ConfigError, ConfigSource
from monitor.demo import agent, backends
from monitor.demo.control import Switch, control_app
from monitor.demo.echo import EchoServer
from monitor.demo.edge import edge_app
from monitor.exitcodes import ExitCode
from monitor.probes import PROBE_KINDS
from monitor.redact import Redactor

BACKENDS = ("backend-a", "backend-b", "backend-c")
LOOPBACK = "127.0.0.1"
# The echo path (the VPC connector stand-in) when saturated: 8 connections at
# once, 200 ms added latency; a burst's 10-connection step finds the knee.
ECHO_SATURATED = {"cap": 8, "hold": 0.5, "latency": 0.2}
ECHO_MODES = ("ok", "saturated")


class DemoStack:
    """The demo services; ``environ`` holds the DEMO_* values demo.yaml reads."""

    def __init__(self, control_port: int = 0) -> None:
        self.control_port = control_port
        self.faults = backends.Faults()
        self.agent_faults = agent.AgentFaults()
        self.echo = EchoServer()
        self.environ: dict[str, str] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="monitor-demo-"))
        self._runners: list[web.AppRunner] = []

    async def __aenter__(self) -> DemoStack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        import trustme  # the demo's throwaway CA (extra "demo")

        ca = trustme.CA()
        leaf = ca.issue_cert(LOOPBACK, "localhost")
        ca_file = self.workdir / "demo-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(server_ssl)
        client_ssl = ssl.create_default_context(cafile=str(ca_file))

        backend_urls = []
        for name in BACKENDS:
            port = await self._serve(backends.backend_app(name, self.faults),
                                     ssl_context=server_ssl)
            backend_urls.append(f"https://{LOOPBACK}:{port}")
            self.environ[f"DEMO_{name.upper().replace('-', '_')}_URL"] = backend_urls[-1]
        edge_port = await self._serve(edge_app(backend_urls, client_ssl), ssl_context=server_ssl)
        agent_port = await self._serve(agent.agent_app(self.agent_faults),
                                       ssl_context=server_ssl)
        echo_port = await self.echo.start(LOOPBACK)
        control_port = await self._serve(control_app(self.switches()), port=self.control_port)
        self.environ.update({
            "DEMO_CA_FILE": str(ca_file),
            "DEMO_EDGE_URL": f"https://{LOOPBACK}:{edge_port}",
            "DEMO_EDGE_TARGET": f"{LOOPBACK}:{edge_port}",
            "DEMO_AGENT_URL": f"https://{LOOPBACK}:{agent_port}",
            "DEMO_AGENT_WS_URL": f"wss://{LOOPBACK}:{agent_port}/ws",
            "DEMO_AGENT_PASSWORD": agent.DEMO_PASSWORD,
            "DEMO_ECHO_TARGET": f"{LOOPBACK}:{echo_port}",
            "DEMO_CONTROL_URL": f"http://{LOOPBACK}:{control_port}",
        })

    def switches(self) -> dict[str, Switch]:
        """Every fault switch of the stack, by target name."""
        switches = {name: Switch(backends.MODES, partial(self.faults.set, name))
                    for name in BACKENDS}
        switches["agent"] = Switch(agent.MODES, self.agent_faults.set)
        switches["echo"] = Switch(ECHO_MODES, self._set_echo)
        return switches

    def _set_echo(self, mode: str) -> None:
        if mode == "saturated":
            self.echo.set_faults(**ECHO_SATURATED)
        else:
            self.echo.set_faults(cap=None, hold=0.0, latency=0.0)

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.echo.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def _serve(self, app: web.Application, *, port: int = 0,
                     ssl_context: ssl.SSLContext | None = None) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, LOOPBACK, port, ssl_context=ssl_context)
        await site.start()
        server: Any = site._server  # aiohttp keeps the bound socket here
        return int(server.sockets[0].getsockname()[1])


def demo_config_text(postgres: bool = False) -> str:
    """demo.yaml, plus the PostgreSQL probe of demo-postgres.yaml when asked."""
    files = resources.files("monitor.demo")
    text = files.joinpath("demo.yaml").read_text(encoding="utf-8")
    if postgres:
        text += files.joinpath("demo-postgres.yaml").read_text(encoding="utf-8")
    return text


def postgres_environ(dsn: str) -> dict[str, str]:
    """postgresql://user:password@host:port/db -> the DEMO_PG_* values demo-postgres.yaml reads."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ValueError("--postgres expects postgresql://user[:password]@host[:port]/database")
    return {
        "DEMO_PG_HOST": parts.hostname,
        "DEMO_PG_PORT": str(parts.port or 5432),
        "DEMO_PG_USER": unquote(parts.username or "postgres"),
        "DEMO_PG_PASSWORD": unquote(parts.password or ""),
        "DEMO_PG_DATABASE": parts.path.lstrip("/") or "postgres",
    }


def run_demo(*, port: int, postgres_dsn: str | None, redactor: Redactor) -> ExitCode:
    return asyncio.run(_run_demo(port, postgres_dsn, redactor))


def demo_source(stack: DemoStack, port: int, pg: dict[str, str]) -> ConfigSource:
    """The demo's config file in the stack's workdir, reading the stack's DEMO_* values."""
    path = stack.workdir / "monitor.yaml"
    path.write_text(demo_config_text(postgres=bool(pg)), encoding="utf-8")
    return ConfigSource.file(path, environ={**stack.environ, **pg, "DEMO_PORT": str(port)},
                             kinds=PROBE_KINDS)


async def _run_demo(port: int, postgres_dsn: str | None, redactor: Redactor) -> ExitCode:
    if not 1 <= port <= 65534:  # 0 would put the fault switches on port 1
        print(f"monitor demo: --port must be 1-65534 (the fault switches listen on the "
              f"next port), got {port}")
        return ExitCode.CONFIG
    try:
        pg = postgres_environ(postgres_dsn) if postgres_dsn else {}
    except ValueError as error:
        print(f"monitor demo: {error}")
        return ExitCode.CONFIG
    async with DemoStack(control_port=port + 1) as stack:
        source = demo_source(stack, port, pg)
        path = source.path
        try:
            config = source.load()
        except ConfigError as error:  # a bug of ours: the bundled config must load
            print("\n".join(error.problems))
            return ExitCode.CONFIG
        redactor.update(config.secrets)
        control = stack.environ["DEMO_CONTROL_URL"]
        print(
            f"monitor demo: {len(config.probes)} probes against simulated services on loopback\n"
            f"  status page  http://{LOOPBACK}:{port}/\n"
            f"  metrics      http://{LOOPBACK}:{port}/metrics\n"
            f"  status JSON  http://{LOOPBACK}:{port}/api/status\n"
            f"  config       {path}  (edit, then: curl -X POST http://{LOOPBACK}:{port}/-/reload)\n"
            f"inject a fault (list them: curl {control}/fault):\n"
            f"  curl -X POST {control}/fault/backend-b/503        "
            f"# one backend fails: edge-lb and backend-b-direct\n"
            f"  curl -X POST {control}/fault/agent/close1011      "
            f"# the golden path breaks at its answer step\n"
            f"  curl -X POST {control}/fault/echo/saturated       "
            f"# the egress path saturates: vpc-echo's knee drops\n"
            f"  curl -X POST {control}/fault/backend-b/ok         # and back\n"
            f"stop with Ctrl-C",
            flush=True,
        )
        return await serve(source, config, redactor)
