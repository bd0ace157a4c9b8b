"""`kind: sql`: a fresh database connection, a query, the server's headroom."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from monitor.config.common import Layer, ProbeBase, Strict, check_ca_file
from monitor.config.net import IpFamily
from monitor.config.types import Duration, format_duration, parse_duration, read_file

# A burst opens this many connections at once at most: enough to reproduce
# a fleet of instances starting together, small next to any real server's
# max_connections (Cloud SQL's smallest tiers allow 25-100).
MAX_BURST = 100
# The query is sent as written; its rows are read and thrown away.
MAX_QUERY_CHARS = 64 * 1024
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
# A password file holds one password (a few hundred bytes at most).
MAX_SECRET_FILE_BYTES = 64 * 1024
# The connect the probe measures needs room above app_timeout, so that a
# connect slower than the application's timeout is seen (and timed) rather
# than cut off at the same moment.
TIMEOUT_ABOVE_APP_TIMEOUT = 10.0


class SecretFile(Strict):
    """A secret read from a file at load time; only the path is printable."""

    path: Path
    value: SecretStr = Field(repr=False)


def _read_secret_file(value: Any) -> Any:
    if isinstance(value, str | Path):
        path = Path(value)
        data = read_file(path, "password_file", MAX_SECRET_FILE_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"password_file {str(path)!r} is not UTF-8 text") from None
        # Files written by `echo` or an editor end with a newline that is
        # not part of the password.
        return {"path": path, "value": text.rstrip("\r\n")}
    return value


PasswordFile = Annotated[SecretFile, BeforeValidator(_read_secret_file)]


class SqlTLS(Strict):
    """TLS to the database server.

    ``disable``: plain TCP (the Cloud SQL Auth Proxy encrypts on its own,
    so a probe through the proxy talks plain to localhost). ``require``:
    encrypted, the certificate is not checked. ``verify-full``: encrypted,
    the chain is checked against ``ca_file`` (or the system CAs) and the
    name against ``server_name`` (or ``host``).

    ``cert_file`` / ``key_file``: a client certificate, as libpq's
    ``sslcert`` / ``sslkey`` (PostgreSQL ``clientcert=verify-full``) and
    MySQL's ``--ssl-cert`` / ``--ssl-key`` (a user ``REQUIRE X509``). The key
    may sit in ``cert_file``; ``key_file`` alone is an error. The files are
    checked at load and read again when they change.
    """

    mode: Literal["disable", "require", "verify-full"] = "disable"
    ca_file: Path | None = None
    server_name: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> SqlTLS:
        if self.ca_file is not None:
            check_ca_file(self.ca_file)
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        if self.cert_file is not None:
            if self.mode == "disable":
                raise ValueError("cert_file needs TLS: set mode require or verify-full")
            check_client_cert(self.cert_file, self.key_file)
        if self.mode != "verify-full":
            for name in ("ca_file", "server_name"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} is only used with mode verify-full (mode is {self.mode})"
                    )
        return self


def check_client_cert(cert_file: Path, key_file: Path | None) -> None:
    """Raise ValueError unless OpenSSL loads the pair (and the key matches)."""
    read_file(cert_file, "cert_file")
    if key_file is not None:
        read_file(key_file, "key_file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            str(cert_file), str(key_file) if key_file is not None else None)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise ValueError(
            f"cert_file {str(cert_file)!r}"
            + (f" with key_file {str(key_file)!r}" if key_file is not None else "")
            + f" cannot be loaded: {reason}"
        ) from None


class SqlAuth(Strict):
    """How the probe logs in when not with a password.

    ``google_iam: true``: Cloud SQL IAM database authentication. The
    password is an OAuth access token of the probe's Google identity (the
    metadata server's service account, or ``GOOGLE_APPLICATION_CREDENTIALS``),
    fetched, cached and refreshed before it expires; ``user`` is the IAM
    database user (PostgreSQL: the service account's e-mail without
    ``.gserviceaccount.com``; MySQL: the part before ``@``).
    """

    google_iam: bool = False


class SqlProbeConfig(ProbeBase):
    kind: Literal["sql"]
    layer: Layer = "database"
    driver: Literal["postgres", "mysql"]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)]
    # Which addresses of ``host`` are dialled (monitor.net: the resolver policy).
    ip_family: IpFamily = "any"
    database: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    user: Annotated[str, Field(min_length=1, max_length=128)]
    password: SecretStr | None = Field(default=None, repr=False)
    password_file: PasswordFile | None = None
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)] = "SELECT 1"
    app_timeout: Duration = 25.0
    burst: Annotated[int, Field(ge=1, le=MAX_BURST)] | None = None
    tls: SqlTLS = SqlTLS()
    auth: SqlAuth = SqlAuth()

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "port" not in data:
            data = dict(data)
            # An unknown driver is reported on its own; 5432 keeps the port quiet.
            data["port"] = DEFAULT_PORTS.get(data.get("driver"), 5432)
        return data

    @classmethod
    def default_timeout(cls, data: dict[str, Any], global_timeout: float) -> str:
        """app_timeout + 10s, kept below the interval when the interval allows.

        The global timeout (meant for HTTP requests) is no use here: a
        connect must be allowed to run past app_timeout to be measured.
        """
        try:
            app = parse_duration(data.get("app_timeout", "25s"))
            interval = parse_duration(data["interval"])
        except (ValueError, KeyError):
            return format_duration(global_timeout)  # the field errors say what is wrong
        room = interval - app
        if room <= 0:
            return format_duration(app + TIMEOUT_ABOVE_APP_TIMEOUT)  # problems() explains
        return format_duration(app + min(TIMEOUT_ABOVE_APP_TIMEOUT, room / 2))

    def problems(self) -> list[tuple[str, str]]:
        found = super().problems()
        if self.timeout <= self.app_timeout:
            found.append((
                "timeout",
                f"timeout ({format_duration(self.timeout)}) must be longer than "
                f"app_timeout ({format_duration(self.app_timeout)}), so that a connect "
                "slower than the application's timeout is measured",
            ))
        if self.password is not None and self.password_file is not None:
            found.append((
                "password_file",
                "password and password_file are both set: give one of them",
            ))
        if self.auth.google_iam and (self.password is not None or self.password_file is not None):
            found.append((
                "auth",
                "auth.google_iam uses an access token as the password: remove "
                "password / password_file",
            ))
        return found

    def password_value(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.value.get_secret_value()
        return None

    def info_target(self) -> str:
        # No user, no password: this is a metric label.
        database = f"/{self.database}" if self.database else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.driver}://{host}:{self.port}{database}"
