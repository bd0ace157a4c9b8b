"""`kind: sql`: config rules, and the failures a probe must classify against
ports on 127.0.0.1 that are not (or no longer) databases.

Runs against real PostgreSQL and MariaDB live in tests/integration/sql/.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path
from typing import Any

import aiomysql
import pytest
from aiohttp import web

from monitor.config.loader import ConfigError
from monitor.config.sql import SqlProbeConfig
from monitor.metricspecs import SQL_CONNECT, SQL_CONNECT_RATIO
from monitor.probes import KINDS, build_probe
from monitor.probes.base import ProbeFailure, Result
from monitor.probes.sql import SqlProbe, mysql
from monitor.probes.sql.dial import first_that_accepts
from monitor.probes.sql.session import Marks
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.support import configs
from tests.support.configs import probe_config
from tests.support.faultproxy import client_sockets
from tests.support.http_servers import serve_app, serve_raw

CONNECT, CONNECT_RATIO = SQL_CONNECT.name, SQL_CONNECT_RATIO.name  # as samples name them

DRIVERS = ["postgres", "mysql"]


def load(fields: dict[str, Any], environ: dict[str, str] | None = None) -> SqlProbeConfig:
    fields = {"host": "127.0.0.1", "user": "monitor", **fields}
    probe: SqlProbeConfig = probe_config("sql", environ=environ, **fields)
    return probe


def problems(fields: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(fields)
    return caught.value.problems


async def run(config: SqlProbeConfig) -> Result:
    return await run_once(build_probe(config), redactor=Redactor())


def fast(driver: str, port: int, **fields: Any) -> SqlProbeConfig:
    """A probe with a short timeout for ports that never answer."""
    return load({"driver": driver, "port": port, "app_timeout": "500ms", "timeout": "1s",
                 "interval": "5s", **fields})


# -- config ----------------------------------------------------------------------


def test_registered() -> None:
    """kind sql is in the registry and builds an SqlProbe."""
    assert KINDS["sql"] is SqlProbe
    assert isinstance(build_probe(load({"driver": "mysql"})), SqlProbe)


@pytest.mark.parametrize(("driver", "port"), [("postgres", 5432), ("mysql", 3306)])
def test_port_defaults_to_the_driver_s(driver: str, port: int) -> None:
    """port defaults to 5432 / 3306 by driver; the layer to database."""
    config = load({"driver": driver})
    assert config.port == port
    assert config.layer == "database"
    assert config.query == "SELECT 1"


@pytest.mark.parametrize(("fields", "timeout"), [
    ({}, 27.5),                                         # 30s interval: halfway above 25s
    ({"interval": "1m"}, 35.0),                         # room for app_timeout + 10s
    ({"interval": "1m", "app_timeout": "5s"}, 15.0),
    ({"interval": "1m", "timeout": "50s"}, 50.0),       # given: kept
], ids=["interval-30s", "interval-1m", "short-app-timeout", "explicit"])
def test_default_timeout_lies_between_app_timeout_and_interval(
    fields: dict[str, Any], timeout: float,
) -> None:
    """Without a timeout the probe gets app_timeout + 10s, or less to stay below interval."""
    config = load({"driver": "postgres", **fields})
    assert config.timeout == timeout
    assert config.app_timeout < config.timeout < config.interval


def test_timeout_must_exceed_app_timeout() -> None:
    """A timeout at or below app_timeout is refused: the slow connect would go unmeasured."""
    found = problems({"driver": "postgres", "app_timeout": "25s", "timeout": "20s"})
    assert found == [
        "probes[0].timeout (probe 'db'): timeout (20s) must be longer than app_timeout (25s), "
        "so that a connect slower than the application's timeout is measured",
    ]


def test_password_file_is_read_at_load_and_kept_secret(tmp_path: Path) -> None:
    """password_file is read when loading (trailing newline dropped) and never printed
    (runs read it again when it changes: tests/integration/sql/test_sql_credentials.py)."""
    secret = tmp_path / "db-password"
    secret.write_text("file-secret-123\n")
    config = configs.load({
        "name": "db", "kind": "sql", "driver": "postgres", "host": "127.0.0.1",
        "user": "monitor", "password_file": str(secret),
    })
    probe: SqlProbeConfig = config.probes[0]
    assert probe.password_value() == "file-secret-123"
    assert "file-secret-123" in config.secrets
    assert "file-secret-123" not in repr(probe)
    assert "file-secret-123" not in str(probe.model_dump())


def test_client_certificate_fields(tmp_path: Path) -> None:
    """tls.cert_file/key_file: loaded at validation; key alone, plain TCP or a bad
    pair are refused with the field named."""
    import trustme

    leaf = trustme.CA().issue_cert("monitor.client.test", common_name="monitor")
    cert, key, junk = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "junk.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    junk.write_text("not a certificate\n")
    config = load({"driver": "postgres", "tls": {"mode": "require", "cert_file": str(cert),
                                                 "key_file": str(key)}})
    assert config.tls.cert_file == cert
    found = problems({"driver": "postgres", "tls": {"mode": "require", "key_file": str(key)}})
    assert found == ["probes[0].tls (probe 'db'): key_file needs cert_file "
                     "(the client certificate)"]
    found = problems({"driver": "mysql", "tls": {"cert_file": str(cert), "key_file": str(key)}})
    assert found == ["probes[0].tls (probe 'db'): cert_file needs TLS: set mode require "
                     "or verify-full"]
    (found_one,) = problems({"driver": "mysql", "tls": {"mode": "require",
                                                         "cert_file": str(junk)}})
    assert found_one.startswith(f"probes[0].tls (probe 'db'): cert_file '{junk}' cannot be "
                                "loaded")


def test_tls_files_gone_bad_after_validation_fail_the_build(tmp_path: Path) -> None:
    """A CA file broken between validation and build fails building the probe with
    reason tls (the daemon then keeps its running config), not every run."""
    import trustme

    from monitor.probes.base import ProbeFailure

    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = load({"driver": "postgres", "tls": {"mode": "verify-full", "ca_file": str(ca)}})
    assert isinstance(build_probe(config), SqlProbe)
    ca.write_text("gone bad\n")
    with pytest.raises(ProbeFailure) as caught:
        build_probe(config)
    assert caught.value.reason == "tls"
    assert "cannot load the TLS files" in caught.value.detail


def test_google_iam_excludes_a_password() -> None:
    """auth.google_iam takes the token as the password: a password as well is refused."""
    found = problems({"driver": "postgres", "password": "x", "auth": {"google_iam": True}})
    assert found == ["probes[0].auth (probe 'db'): auth.google_iam uses an access token as "
                     "the password: remove password / password_file"]
    assert load({"driver": "postgres", "auth": {"google_iam": True}}).auth.google_iam


def test_password_from_environment_is_a_secret() -> None:
    """password: ${DB_PASSWORD} is collected as a secret and hidden from repr."""
    config = configs.load({
        "name": "db", "kind": "sql", "driver": "mysql", "host": "127.0.0.1",
        "user": "monitor", "password": "${DB_PASSWORD}",
    }, environ={"DB_PASSWORD": "env-secret-456"})
    assert "env-secret-456" in config.secrets
    assert "env-secret-456" not in repr(config)
    assert config.probes[0].info_target() == "mysql://127.0.0.1:3306"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"driver": "oracle"}, "probes[0].driver (probe 'db'): Input should be 'postgres' or 'mysql'"),
    ({"driver": "mysql", "burst": 101},
     "probes[0].burst (probe 'db'): must be at most 100, got 101"),
    ({"driver": "mysql", "burst": 0}, "probes[0].burst (probe 'db'): must be at least 1, got 0"),
    ({"driver": "mysql", "password_file": "/nonexistent/pw"},
     "probes[0].password_file (probe 'db'): cannot read password_file '/nonexistent/pw': "
     "No such file or directory"),
    ({"driver": "mysql", "tls": {"mode": "require", "server_name": "db.test"}},
     "probes[0].tls (probe 'db'): server_name is only used with mode verify-full "
     "(mode is require)"),
    ({"driver": "mysql", "dsn": "mysql://u@h/db"},
     "probes[0].dsn (probe 'db'): is not a known field"),
], ids=["driver", "burst-cap", "burst-zero", "password-file", "tls-server-name", "dsn"])
def test_invalid_fields_are_named(fields: dict[str, Any], expected: str) -> None:
    """Each invalid field is reported with the probe's name and path."""
    assert expected in problems(fields)


def test_password_and_password_file_exclude_each_other(tmp_path: Path) -> None:
    """password and password_file together are refused."""
    secret = tmp_path / "pw"
    secret.write_text("x")
    assert problems({"driver": "mysql", "password": "inline-pw", "password_file": str(secret)}) == [
        "probes[0].password_file (probe 'db'): password and password_file are both set: "
        "give one of them",
    ]


def test_series_exist_from_registration() -> None:
    """Registration sets app_timeout and creates the phase and connect series (tls if used)."""
    plain = build_probe(load({"driver": "postgres", "app_timeout": "20s"}))
    samples = {(s.metric, s.labels, s.op) for s in plain.registration_samples()}
    assert ("monitor_sql_app_timeout_seconds", (), "set") in samples
    assert (CONNECT, (), "touch") in samples
    phases = {dict(labels)["phase"] for metric, labels, _ in samples
              if metric == "monitor_sql_phase_duration_seconds"}
    assert phases == {"connect", "startup", "query"}
    encrypted = build_probe(load({"driver": "postgres", "tls": {"mode": "require"}}))
    assert ("monitor_sql_phase_duration_seconds", (("phase", "tls"),), "touch") in {
        (s.metric, s.labels, s.op) for s in encrypted.registration_samples()}


# -- ports that do not behave like databases --------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_nothing_listening_is_connect_refused(driver: str) -> None:
    """A closed port fails with connect_refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connects are refused
        result = await run(fast(driver, port))
    assert (result.ok, result.reason) == (False, "connect_refused"), result.detail


@pytest.mark.parametrize("driver", DRIVERS)
async def test_unknown_host_is_dns(driver: str) -> None:
    """A name that does not resolve fails with dns."""
    result = await run(fast(driver, 5432, host="no-such-host.invalid", timeout="4s"))
    assert (result.ok, result.reason) == (False, "dns"), result.detail


@pytest.mark.parametrize(("driver", "stage"), [
    ("postgres", "did not finish the startup"),
    ("mysql", "sent no greeting"),
])
async def test_silent_listener_is_connect_timeout(driver: str, stage: str) -> None:
    """A port that accepts and never speaks fails with connect_timeout inside the timeout."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe gives up and closes

    async with serve_raw(silent) as served:
        result = await run(fast(driver, served.port))
        assert served.connections == 1  # no retry
    assert (result.ok, result.reason) == (False, "connect_timeout"), result.detail
    assert stage in result.detail
    # Observed at the time it was given up, so a hung path raises the percentiles.
    observed = [s.value for s in result.samples if s.metric == CONNECT and s.op == "observe"]
    assert len(observed) == 1 and observed[0] >= 1.0


@pytest.mark.parametrize("driver", DRIVERS)
async def test_accept_and_close_is_connection_reset_without_leaks(driver: str) -> None:
    """EOF right after connect (an Auth Proxy that cannot reach the instance) is
    connection_reset; no socket, task or file descriptor is left behind."""
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serve_raw(close_at_once) as served:
        tasks_before = asyncio.all_tasks()
        fds_before = len(os.listdir("/proc/self/fd"))
        results = [await run(fast(driver, served.port)) for _ in range(5)]
        await asyncio.sleep(0)  # let closed transports run their callbacks
        assert client_sockets(served.port) == 0
        assert asyncio.all_tasks() <= tasks_before
        assert len(os.listdir("/proc/self/fd")) <= fds_before
    for result in results:
        assert (result.ok, result.reason) == (False, "connection_reset"), result.detail
        assert "Cloud SQL Auth Proxy" in result.detail


@pytest.mark.parametrize("driver", DRIVERS)
async def test_reset_right_after_connect_is_connection_reset(driver: str) -> None:
    """A TCP RST instead of an answer is connection_reset."""
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async with serve_raw(reset) as served:
        result = await run(fast(driver, served.port))
    assert (result.ok, result.reason) == (False, "connection_reset"), result.detail


async def test_http_server_on_a_postgres_port_is_protocol() -> None:
    """An HTTP server answering the startup message with a 400 is protocol, not a reset."""
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    async with serve_app(app) as served:
        result = await run(fast("postgres", served.port))
    assert (result.ok, result.reason) == (False, "protocol"), result.detail
    assert "HTTP/1." in result.detail


async def test_http_server_on_a_mysql_port_is_connect_timeout_and_says_why() -> None:
    """MySQL waits for the server to speak first; an HTTP server waits too: the detail says so."""
    app = web.Application()
    async with serve_app(app) as served:
        result = await run(fast("mysql", served.port))
    assert (result.ok, result.reason) == (False, "connect_timeout"), result.detail
    assert "such as an HTTP server" in result.detail


@pytest.mark.parametrize("driver", DRIVERS)
async def test_server_speaking_http_first_is_protocol(driver: str) -> None:
    """A port that greets with an HTTP response is protocol for both drivers."""
    async def http_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serve_raw(http_first) as served:
        result = await run(fast(driver, served.port))
    assert (result.ok, result.reason) == (False, "protocol"), result.detail


# -- the transport layer: resolver, executor, addresses -----------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_dns_lookup_that_never_got_a_thread_is_error(driver: str) -> None:
    """Every thread of the default executor busy (issue 13): the lookup of the host
    never starts, which is ours, not the target's: `error` ("never started"), never
    dns or connect_timeout, and not observed in the connect histograms."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # refused once the name resolves
        loop = asyncio.get_running_loop()
        release = threading.Event()
        blockers = [loop.run_in_executor(None, release.wait, 10) for _ in range(40)]
        try:
            result = await run(fast(driver, port, host="localhost"))
        finally:
            release.set()
            await asyncio.gather(*blockers)
        assert (result.ok, result.reason) == (False, "error"), result.detail
        assert "ours, not the target's" in result.detail
        assert "never started" in result.detail
        assert not [s for s in result.samples
                    if s.metric in (CONNECT, CONNECT_RATIO) and s.op == "observe"]
        # With threads free again, the same lookup works and the port refuses.
        again = await run(fast(driver, port, host="localhost"))
    assert (again.ok, again.reason) == (False, "connect_refused"), again.detail


@pytest.mark.parametrize("driver", DRIVERS)
async def test_ip_family_ipv6_dials_the_ipv6_address(driver: str) -> None:
    """host ::1 with ip_family ipv6 reaches a listener on ::1 (it closes at once: the
    Auth Proxy's connection_reset); ip_family ipv4 refuses the literal as dns."""
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close_at_once, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run(fast(driver, port, host="::1", ip_family="ipv6"))
        wrong = await run(fast(driver, port, host="::1", ip_family="ipv4"))
    finally:
        server.close()
        await server.wait_closed()
    assert (result.ok, result.reason) == (False, "connection_reset"), result.detail
    assert (wrong.ok, wrong.reason) == (False, "dns"), wrong.detail
    assert "ip_family is ipv4" in wrong.detail


async def test_addresses_are_tried_in_order_until_one_accepts() -> None:
    """The resolver's policy for sql: a refused first address gives way to the next
    (nothing was sent: not a retry); what happens after the TCP connect is the outcome
    (here EOF, raised by the driver); when every address fails, the first address's
    reason wins and the detail names each."""
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]  # nothing on 127.0.0.1 at that port
    loop = asyncio.get_running_loop()
    tried: list[str] = []

    async def attempt(marks: Marks, address: str) -> object:
        tried.append(address)
        return await mysql.connect(host=address, port=port, user="u", password="",
                                   database=None, context=None, marks=marks)

    try:
        marks = Marks(loop.time())
        with pytest.raises(aiomysql.OperationalError, match="Lost connection"):
            await first_that_accepts(["127.0.0.1", "127.0.0.2"], port, marks,
                                     lambda a: attempt(marks, a))
        assert tried == ["127.0.0.1", "127.0.0.2"]
        assert marks.tcp_done is not None
    finally:
        server.close()
        await server.wait_closed()
    tried.clear()
    marks = Marks(loop.time())
    with pytest.raises(ProbeFailure) as all_failed:
        await first_that_accepts(["127.0.0.1", "127.0.0.2"], port, marks,
                                 lambda a: attempt(marks, a))
    assert tried == ["127.0.0.1", "127.0.0.2"]
    assert all_failed.value.reason == "connect_refused"
    assert f"127.0.0.1:{port}" in all_failed.value.detail
    assert f"127.0.0.2:{port}" in all_failed.value.detail
