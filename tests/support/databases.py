"""Throwaway PostgreSQL and MariaDB servers on 127.0.0.1, for tests and benches.

Each server gets a fresh data directory under /tmp and a free port, listens
on 127.0.0.1 only, and has a role ``monitor`` (password login, no special
rights) owning a database ``app``. Servers start in about a second.

PostgreSQL refuses to run as root (initdb, postgres, pg_ctl all check), so
as root every server command runs as the ``postgres`` user (subprocess's
``user=``, so the process we signal is the server itself, not a wrapper);
MariaDB likewise runs as ``mysql``. As any other user the
commands run directly.

The binaries come from the Debian packages ``postgresql`` and
``mariadb-server``; ``missing_postgres()`` / ``missing_mariadb()`` say
which one is missing, for the skip message.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port

HOST = "127.0.0.1"
USER = "monitor"
DATABASE = "app"
# Generated per server; tests treat it as the secret that must never leak.
START_SECONDS = 30.0


def _postgres_bin() -> Path | None:
    override = os.environ.get("MONITOR_PG_BIN")
    candidates = [override] if override else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
        if p.split("/")[-2].isdigit() else 0, reverse=True,
    )
    for candidate in candidates:
        if candidate and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def missing_postgres() -> str | None:
    """Why PostgreSQL tests cannot run here, or None."""
    if _postgres_bin() is None:
        return ("PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin "
                "and PATH): install the Debian package `postgresql`")
    if os.geteuid() == 0 and not _user_exists("postgres"):
        return "running as root needs the user `postgres` (the Debian package creates it)"
    if shutil.which("psql") is None and not (_postgres_bin() / "psql").is_file():  # type: ignore[operator]
        return "psql not found: install the Debian package `postgresql-client`"
    return None


def _mariadb_bin() -> tuple[str, str, str] | None:
    server = shutil.which("mariadbd") or shutil.which("mysqld", path="/usr/sbin:/usr/bin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    client = shutil.which("mariadb") or shutil.which("mysql")
    if not (server and install and client):
        return None
    return server, install, client


def missing_mariadb() -> str | None:
    """Why MariaDB tests cannot run here, or None."""
    if _mariadb_bin() is None:
        return ("MariaDB server binaries not found (mariadbd, mariadb-install-db, mariadb): "
                "install the Debian package `mariadb-server`")
    if os.geteuid() == 0 and not _user_exists("mysql"):
        return "running as root needs the user `mysql` (the Debian package creates it)"
    return None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _as(user: str) -> dict[str, Any]:
    """Popen arguments that run as ``user`` when we are root (the servers refuse root)."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": entry.pw_dir, "USER": user}}
    return {}


def _give(user: str, path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, entry.pw_uid, entry.pw_gid)


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not listening on {HOST}:{port} after {START_SECONDS:g}s:\n"
                       f"{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    except OSError:
        return "(no log)"


class _Server:
    driver = ""
    run_as = ""

    def __init__(self, *, max_connections: int, tls: tuple[bytes, bytes] | None,
                 client_ca: bytes | None = None) -> None:
        self.max_connections = max_connections
        self.tls = tls  # (certificate chain PEM, private key PEM)
        # PEM of the CA that client certificates must chain to (needs tls).
        self.client_ca = client_ca
        self.password = "pw-" + os.urandom(9).hex()
        self.user = USER
        self.database = DATABASE
        self.host = HOST
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix=f"monitor-{self.driver}-"))
        self.dir.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "server.log"

    def _write_tls(self) -> tuple[Path, Path] | None:
        if self.tls is None:
            return None
        cert, key = self.dir / "server.pem", self.dir / "server.key"
        cert.write_bytes(self.tls[0])
        key.write_bytes(self.tls[1])
        key.chmod(0o600)
        if self.client_ca is not None:
            self.client_ca_file.write_bytes(self.client_ca)
        return cert, key

    @property
    def client_ca_file(self) -> Path:
        return self.dir / "client-ca.pem"

    def _spawn(self, command: list[str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C goes to pytest, not the server
                **_as(self.run_as),
            )
        _wait_port(self.port, self.process, self.log)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the server (fast shutdown); the data directory stays for a restart."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT if self.driver == "postgres"
                                     else signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def probe_yaml(self, name: str, **fields: object) -> str:
        """A probe entry for this server, as a YAML flow mapping (password via env;
        a field given as None is left out)."""
        base: dict[str, object] = {
            "name": name, "kind": "sql", "driver": "postgres" if self.driver == "postgres"
            else "mysql", "host": self.host, "port": self.port, "database": self.database,
            "user": self.user, "password": "${DB_PASSWORD}",
        }
        base.update(fields)
        base = {key: value for key, value in base.items() if value is not None}  # None: omit
        flow: str = yaml.safe_dump(base, default_flow_style=True, sort_keys=False,
                                   width=1 << 20)
        return flow.strip()


class PostgresServer(_Server):
    driver = "postgres"
    run_as = "postgres"

    def __init__(self, *, max_connections: int = 50,
                 tls: tuple[bytes, bytes] | None = None, client_ca: bytes | None = None,
                 hba: tuple[str, ...] = ()) -> None:
        super().__init__(max_connections=max_connections, tls=tls, client_ca=client_ca)
        # pg_hba.conf lines put before initdb's own (the first match wins).
        self.hba = hba
        bin_dir = _postgres_bin()
        assert bin_dir is not None, missing_postgres()
        self.bin = bin_dir
        self.data = self.dir / "data"

    def start(self) -> PostgresServer:
        if not self.data.exists():
            tls_files = self._write_tls()
            _give(self.run_as, self.dir)
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--no-sync", "--no-instructions"],
                check=True, capture_output=True, timeout=120, **_as(self.run_as),
            )
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(f"listen_addresses = '{HOST}'\n"
                           f"max_connections = {self.max_connections}\n"
                           f"unix_socket_directories = '{self.dir}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                           "shared_buffers = 16MB\n")
                if tls_files:
                    conf.write(f"ssl = on\nssl_cert_file = '{tls_files[0]}'\n"
                               f"ssl_key_file = '{tls_files[1]}'\n")
                    if self.client_ca is not None:
                        conf.write(f"ssl_ca_file = '{self.client_ca_file}'\n")
            if self.hba:
                hba = self.data / "pg_hba.conf"
                hba.write_text("\n".join(self.hba) + "\n" + hba.read_text())
            fresh = True
        else:
            fresh = False
        # A port taken since we picked it shows as an exit: pick again, bounded.
        for attempt in range(3):
            self.port = free_port()
            try:
                self._spawn([str(self.bin / "postgres"), "-D", str(self.data),
                             "-p", str(self.port)])
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self._wait_ready()
        if fresh:
            self.admin(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
            self.admin(f"CREATE DATABASE {self.database} OWNER {self.user}")
        return self

    def _wait_ready(self) -> None:
        """The port opens before recovery ends ("the database system is starting up")."""
        deadline = time.monotonic() + START_SECONDS
        while True:
            done = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", str(self.dir), "-p", str(self.port)],
                capture_output=True, timeout=10,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready after {START_SECONDS:g}s:\n"
                                   f"{_tail(self.log)}")
            time.sleep(0.05)

    def admin(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the Unix socket; return psql's output."""
        psql = self.bin / "psql"
        done = subprocess.run(
            [str(psql) if psql.is_file() else "psql", "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-h", str(self.dir), "-p", str(self.port),
             "-U", "postgres", "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=30,
        )
        if done.returncode:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()


class MariaDBServer(_Server):
    driver = "mariadb"
    run_as = "mysql"

    def __init__(self, *, max_connections: int = 151,
                 tls: tuple[bytes, bytes] | None = None, client_ca: bytes | None = None) -> None:
        super().__init__(max_connections=max_connections, tls=tls, client_ca=client_ca)
        found = _mariadb_bin()
        assert found is not None, missing_mariadb()
        self.server_bin, self.install_bin, self.client_bin = found
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self._tls_files: tuple[Path, Path] | None = None

    def start(self) -> MariaDBServer:
        fresh = not self.data.exists()
        if fresh:
            self._tls_files = self._write_tls()
            _give(self.run_as, self.dir)
            subprocess.run(
                [self.install_bin, "--no-defaults", f"--datadir={self.data}",
                 "--auth-root-authentication-method=normal", "--skip-test-db",
                 "--skip-name-resolve"],
                check=True, capture_output=True, timeout=120, **_as(self.run_as),
            )
        for attempt in range(3):
            self.port = free_port()
            command = [
                self.server_bin, "--no-defaults", f"--datadir={self.data}",
                f"--port={self.port}", f"--bind-address={HOST}", f"--socket={self.socket}",
                f"--pid-file={self.dir / 'mysqld.pid'}", "--skip-name-resolve",
                "--skip-log-bin", "--innodb-buffer-pool-size=16M",
                f"--max-connections={self.max_connections}",
            ]
            if self._tls_files:
                command += [f"--ssl-cert={self._tls_files[0]}", f"--ssl-key={self._tls_files[1]}"]
                if self.client_ca is not None:
                    command.append(f"--ssl-ca={self.client_ca_file}")
            try:
                self._spawn(command)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        if fresh:
            self.admin(f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}'; "
                       f"CREATE DATABASE {self.database}; "
                       f"GRANT ALL ON {self.database}.* TO '{self.user}'@'%'")
        return self

    def admin(self, sql: str) -> str:
        """Run ``sql`` as root over the Unix socket; return the client's output."""
        done = subprocess.run(
            [self.client_bin, "--no-defaults", "-S", str(self.socket), "-u", "root",
             "-N", "-B", "-e", sql],
            capture_output=True, text=True, timeout=30,
        )
        if done.returncode:
            raise RuntimeError(f"mariadb client failed ({done.returncode}): "
                               f"{done.stderr.strip()}")
        return done.stdout.strip()
