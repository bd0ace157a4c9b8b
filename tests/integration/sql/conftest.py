"""Real PostgreSQL and MariaDB servers on 127.0.0.1 for the sql probe tests.

Session-scoped: each server starts once (about a second) and is shared by
the tests; tests that change server state undo it. Without the server
binaries the tests skip and say which Debian package is missing; with
``CI`` or ``MONITOR_REQUIRE_DATABASES`` set they fail instead, so that CI
never passes by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.databases import (
    MariaDBServer,
    PostgresServer,
    missing_mariadb,
    missing_postgres,
)


def _need(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI") or os.environ.get("MONITOR_REQUIRE_DATABASES"):
        pytest.fail(f"database server required here: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def db_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """A throwaway CA; its file is what a probe's tls.ca_file points at."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("db-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def _server_tls(ca: trustme.CA) -> tuple[bytes, bytes]:
    # The certificate names the IP (what the probe dials) and a DNS name
    # (for tls.server_name), as a Cloud SQL server certificate names its instance.
    leaf = ca.issue_cert("127.0.0.1", "db.test")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return chain, leaf.private_key_pem.bytes()


# A role that may log in only over TLS with a client certificate naming it
# (libpq's sslcert/sslkey; the password is checked as well).
CERT_USER = "certuser"


@pytest.fixture(scope="session")
def pg(db_ca: tuple[trustme.CA, Path]) -> Iterator[PostgresServer]:
    """PostgreSQL with TLS available (not required), max_connections 50; role
    ``certuser`` only over TLS with a client certificate (clientcert=verify-full)."""
    _need(missing_postgres())
    server = PostgresServer(
        max_connections=50, tls=_server_tls(db_ca[0]), client_ca=db_ca[0].cert_pem.bytes(),
        hba=(f"hostssl all {CERT_USER} 127.0.0.1/32 scram-sha-256 clientcert=verify-full",
             f"host all {CERT_USER} 127.0.0.1/32 reject"),
    ).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_small() -> Iterator[PostgresServer]:
    """PostgreSQL without TLS and 8 connections, 3 reserved: 5 for clients."""
    _need(missing_postgres())
    server = PostgresServer(max_connections=8).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mariadb(db_ca: tuple[trustme.CA, Path]) -> Iterator[MariaDBServer]:
    """MariaDB with TLS available (not required), max_connections 151; client
    certificates of ``db_ca`` are accepted (for users REQUIRE X509)."""
    _need(missing_mariadb())
    server = MariaDBServer(tls=_server_tls(db_ca[0]),
                           client_ca=db_ca[0].cert_pem.bytes()).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["postgres", "mysql"])
def db(request: pytest.FixtureRequest) -> PostgresServer | MariaDBServer:
    """Each test using it runs against both servers."""
    server: PostgresServer | MariaDBServer = request.getfixturevalue(
        "pg" if request.param == "postgres" else "mariadb"
    )
    return server


# The fixtures above that start a database server: a test using one needs
# PostgreSQL or MariaDB, so it carries the `external` marker (tests/conftest.py).
SERVER_FIXTURES = frozenset({"pg", "pg_small", "mariadb", "db"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if (Path(str(item.path)).parent == here
                and SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.external)
