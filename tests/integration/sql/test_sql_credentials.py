"""Client certificates, password files that change, and Cloud SQL IAM tokens,
against real PostgreSQL and MariaDB servers on 127.0.0.1.

- PostgreSQL: role ``certuser`` may log in only over TLS with a client
  certificate whose CN names it (``hostssl ... clientcert=verify-full`` in
  pg_hba.conf, conftest.py).
- MariaDB: a user ``REQUIRE X509`` (any certificate of the test CA).
- IAM: the fake metadata server (tests/support/metadata.py) hands out access
  tokens; the PostgreSQL role's password is set to the token it will hand out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from structlog.testing import capture_logs

from monitor.config.loader import parse_config
from monitor.config.sql import SqlProbeConfig
from monitor.gcp.tokens import REFRESH_MARGIN_SECONDS, IdTokenProvider
from monitor.probes import PROBE_KINDS, build_probe
from monitor.probes.base import Probe, Result
from monitor.probes.sql import credentials
from monitor.probes.sql.credentials import SQL_LOGIN_SCOPE, fetch_google_access_token
from monitor.redact import Redactor
from monitor.runner import run_once
from tests.integration.sql.conftest import CERT_USER
from tests.support.databases import MariaDBServer, PostgresServer
from tests.support.metadata import Clock, FakeMetadata, fake_metadata, point_google_auth_at

Server = PostgresServer | MariaDBServer


def sql_probe(server: Server, name: str = "db", environ: dict[str, str] | None = None,
              **fields: Any) -> SqlProbeConfig:
    """A probe for ``server`` through the real loader; fields replace the defaults."""
    fields = {"interval": "10s", "app_timeout": "2s", "timeout": "5s", **fields}
    text = "probes:\n  - " + server.probe_yaml(name, **fields) + "\n"  # password=None: none
    config: SqlProbeConfig = parse_config(
        text, environ if environ is not None else {"DB_PASSWORD": server.password},
        kinds=PROBE_KINDS).probes[0]
    return config


async def run(config: SqlProbeConfig, probe: Probe, *, debug: bool = False) -> Result:
    return await run_once(probe, redactor=Redactor(), debug=debug)


def write_cert(ca: trustme.CA, folder: Path, common_name: str) -> tuple[Path, Path]:
    """A client certificate (chain) and its key, as files."""
    leaf = ca.issue_cert(f"{common_name}.client.test", common_name=common_name)
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "client.pem", folder / "client.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


@pytest.fixture
async def cert_role(pg: PostgresServer) -> AsyncIterator[str]:
    """The certuser role with a password; dropped after the test."""
    password = "cert-pw-" + str(time.time_ns())
    pg.admin(f"CREATE ROLE {CERT_USER} LOGIN PASSWORD '{password}'")
    pg.admin(f"GRANT CONNECT ON DATABASE {pg.database} TO {CERT_USER}")
    try:
        yield password
    finally:
        pg.admin(f"DROP OWNED BY {CERT_USER}")
        pg.admin(f"DROP ROLE {CERT_USER}")


# -- client certificates ---------------------------------------------------------------


async def test_postgres_clientcert_verify_full(
    pg: PostgresServer, cert_role: str, db_ca: tuple[trustme.CA, Path], tmp_path: Path,
) -> None:
    """Without a certificate, or with one naming another user, PostgreSQL refuses
    (auth); with certuser's certificate (sslcert/sslkey) the run passes."""
    ca, ca_file = db_ca
    env = {"DB_PASSWORD": cert_role}
    tls: dict[str, str] = {"mode": "verify-full", "ca_file": str(ca_file)}
    bare = sql_probe(pg, user=CERT_USER, tls=tls, environ=env)
    result = await run(bare, build_probe(bare))
    assert (result.ok, result.reason) == (False, "auth"), result.detail
    assert "certificate" in result.detail

    cert, key = write_cert(ca, tmp_path / "other", "someone-else")
    wrong = sql_probe(pg, user=CERT_USER, environ=env,
                      tls={**tls, "cert_file": str(cert), "key_file": str(key)})
    result = await run(wrong, build_probe(wrong))
    assert (result.ok, result.reason) == (False, "auth"), result.detail
    # PostgreSQL words a failed CN check as the method's failure to the client;
    # its log says what failed.
    assert "password authentication failed" in result.detail
    assert (f'provided user name ({CERT_USER}) and authenticated user name (someone-else)'
            in pg.log.read_text(errors="replace"))

    cert, key = write_cert(ca, tmp_path / "right", CERT_USER)
    good = sql_probe(pg, user=CERT_USER, environ=env,
                     tls={**tls, "cert_file": str(cert), "key_file": str(key)})
    result = await run(good, build_probe(good))
    assert result.ok, result.detail
    assert "tls" in result.phases


async def test_client_certificate_is_reloaded_when_its_files_change(
    pg: PostgresServer, cert_role: str, db_ca: tuple[trustme.CA, Path], tmp_path: Path,
) -> None:
    """A probe whose cert_file/key_file are rewritten uses the new pair from the next
    run on, without a config reload; unchanged files are not loaded again."""
    ca, ca_file = db_ca
    folder = tmp_path / "certs"
    cert, key = write_cert(ca, folder, "someone-else")
    config = sql_probe(pg, user=CERT_USER, environ={"DB_PASSWORD": cert_role},
                       tls={"mode": "verify-full", "ca_file": str(ca_file),
                            "cert_file": str(cert), "key_file": str(key)})
    probe = build_probe(config)
    assert (await run(config, probe)).reason == "auth"
    first = probe._tls.get()  # type: ignore[attr-defined]
    assert (await run(config, probe)).reason == "auth"
    # The unchanged files were not read again: the shared cache's context is kept.
    assert probe._tls.get() is first  # type: ignore[attr-defined]
    write_cert(ca, folder, CERT_USER)  # rotated in place, as a secret mount does
    result = await run(config, probe)
    assert result.ok, result.detail
    assert probe._tls.get() is not first  # type: ignore[attr-defined]
    cert.write_text("not a certificate any more\n")  # a rotation gone wrong
    broken = await run(config, probe)
    assert (broken.ok, broken.reason) == (False, "tls"), broken.detail
    assert "cannot load the TLS files" in broken.detail


async def test_mariadb_user_require_x509(
    mariadb: MariaDBServer, db_ca: tuple[trustme.CA, Path], tmp_path: Path,
) -> None:
    """A MariaDB user REQUIRE X509 is refused without a client certificate (auth),
    even over TLS, and passes with one of the CA."""
    user, password = "x509user", "x509-pw-123"
    mariadb.admin(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}' REQUIRE X509; "
                  f"GRANT SELECT ON app.* TO '{user}'@'%'")
    try:
        env = {"DB_PASSWORD": password}
        tls = {"mode": "verify-full", "ca_file": str(db_ca[1])}
        bare = sql_probe(mariadb, user=user, tls=tls, environ=env)
        refused = await run(bare, build_probe(bare))
        cert, key = write_cert(db_ca[0], tmp_path, user)
        good = sql_probe(mariadb, user=user, environ=env,
                         tls={**tls, "cert_file": str(cert), "key_file": str(key)})
        accepted = await run(good, build_probe(good))
    finally:
        mariadb.admin(f"DROP USER '{user}'@'%'")
    assert (refused.ok, refused.reason) == (False, "auth"), refused.detail
    assert accepted.ok, accepted.detail
    assert "tls" in accepted.phases


# -- password_file -------------------------------------------------------------------


async def test_password_file_is_read_again_when_it_changes(db: Server, tmp_path: Path) -> None:
    """A rotated password file is used from the next run on; an unchanged one is read
    once (the first run) and not again; a file that went missing fails with auth,
    naming the file only."""
    user, old, new = "rotating", "first-secret-111", "second-secret-2222"
    create = (f"CREATE ROLE {user} LOGIN PASSWORD '{old}'" if isinstance(db, PostgresServer)
              else f"CREATE USER '{user}'@'%' IDENTIFIED BY '{old}'; "
                   f"GRANT SELECT ON app.* TO '{user}'@'%'")
    db.admin(create)
    secret = tmp_path / "db-password"
    secret.write_text(old + "\n")
    try:
        config = sql_probe(db, user=user, password=None, password_file=str(secret))
        probe = build_probe(config)
        assert (await run(config, probe)).ok
        assert (await run(config, probe)).ok
        assert probe._password.reads == 1  # type: ignore[attr-defined]  # first run only
        db.admin(f"ALTER ROLE {user} PASSWORD '{new}'" if isinstance(db, PostgresServer)
                 else f"ALTER USER '{user}'@'%' IDENTIFIED BY '{new}'")
        assert (await run(config, probe)).reason == "auth"  # the file still says old
        secret.write_text(new + "\n")
        result = await run(config, probe)
        assert result.ok, result.detail
        assert probe._password.reads == 2  # type: ignore[attr-defined]
        secret.unlink()
        gone = await run(config, probe, debug=True)
    finally:
        db.admin(f"DROP ROLE {user}" if isinstance(db, PostgresServer)
                 else f"DROP USER '{user}'@'%'")
    assert (gone.ok, gone.reason) == (False, "auth")
    assert "password_file changed and cannot be used" in gone.detail
    assert str(secret) in gone.detail
    for text in [gone.detail, *gone.trace]:
        assert old not in text and new not in text


# -- Cloud SQL IAM database authentication ---------------------------------------------


@pytest.fixture
async def metadata(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeMetadata, Clock]]:
    """The fake metadata server, google-auth aimed at it, and the sql probes' token
    cache replaced by one on a hand-moved clock (google-auth dates tokens in real time)."""
    async with fake_metadata(now=time.time()) as fake:
        with point_google_auth_at(fake.host, monkeypatch):
            clock = Clock(time.time())
            tokens = IdTokenProvider(fetch_google_access_token, clock=clock,
                                     what="a Google access token for scope",
                                     event="access token fetched")
            monkeypatch.setattr(credentials, "ACCESS_TOKENS", tokens)
            yield fake, clock


async def test_google_iam_uses_the_metadata_token_as_the_password(
    pg: PostgresServer, metadata: tuple[FakeMetadata, Clock], caplog: pytest.LogCaptureFixture,
) -> None:
    """auth.google_iam: the access token from the metadata server logs in; it is
    cached, fetched again before it expires, and never logged, traced or detailed."""
    fake, clock = metadata
    caplog.set_level(logging.DEBUG)  # google-auth's and urllib3's own logs too
    user = "iam_sa"
    first = "ya29.first-" + "a" * 120
    fake.queue = [first, "ya29.second-" + "b" * 120]
    pg.admin(f"CREATE ROLE {user} LOGIN PASSWORD '{first}'")
    try:
        config = sql_probe(pg, user=user, password=None, auth={"google_iam": True})
        probe = build_probe(config)
        with capture_logs() as logs:
            results = [await run(config, probe, debug=True), await run(config, probe, debug=True)]
            assert len(fake.token_calls) == 1  # cached for the second run
            clock.now += fake.lifetime - REFRESH_MARGIN_SECONDS + 1  # inside the margin
            pg.admin(f"ALTER ROLE {user} PASSWORD '{fake.queue[1]}'")
            results.append(await run(config, probe, debug=True))
    finally:
        pg.admin(f"DROP ROLE {user}")
    for result in results:
        assert result.ok, result.detail
    assert len(fake.token_calls) == 2
    assert fake.token_calls[0]["scopes"] == SQL_LOGIN_SCOPE
    haystacks = [repr(logs), repr(config), caplog.text]
    assert any(e["event"] == "access token fetched" for e in logs)  # we did log something
    for result in results:
        haystacks += [result.detail, *result.trace, repr(result.facts)]
    for token in fake.access_tokens:
        for haystack in haystacks:
            assert token not in haystack


async def test_google_iam_without_a_token_is_auth(
    pg: PostgresServer, metadata: tuple[FakeMetadata, Clock],
) -> None:
    """A metadata server that refuses fails the run with auth, naming the scope."""
    fake, _ = metadata
    fake.status = 404
    config = sql_probe(pg, user="nobody", password=None, auth={"google_iam": True})
    result = await run(config, build_probe(config))
    assert (result.ok, result.reason) == (False, "auth")
    assert f"could not get a Google access token for scope '{SQL_LOGIN_SCOPE}'" in result.detail
