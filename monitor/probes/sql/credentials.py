"""Where the sql probe's password comes from, run by run.

- ``password``: fixed for the life of the config.
- ``password_file``: read at load, then read again whenever the file's size
  or mtime changed (one ``stat`` per run: a rotated secret, as a Secret
  Manager volume mount rewrites it, is used from the next run on).
- ``auth: {google_iam: true}``: Cloud SQL IAM database authentication. The
  password is an OAuth 2.0 access token of the probe's Google identity,
  from the same place the ID tokens of monitor/gcp/tokens.py come from:
  ``GOOGLE_APPLICATION_CREDENTIALS`` when set, else the metadata server
  (``GET /computeMetadata/v1/instance/service-accounts/default/token``, the
  path Cloud SQL connectors use). Cached and shared per scope, refreshed 5
  minutes before it expires (tokens live an hour); the fetch runs in a
  worker thread. A token that cannot be had fails the run with ``auth``.

No secret is logged, traced or put in a detail: the value goes to the
driver only.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from monitor.config.sql import MAX_SECRET_FILE_BYTES, SqlProbeConfig
from monitor.config.types import read_file
from monitor.gcp.tokens import IdTokenProvider
from monitor.probes.base import ProbeFailure

# What Cloud SQL IAM database authentication asks of a token.
SQL_LOGIN_SCOPE = "https://www.googleapis.com/auth/sqlservice.login"


def fetch_google_access_token(scope: str) -> tuple[str, float | None]:
    """Blocking: one OAuth access token for ``scope`` from google-auth, and its expiry."""
    # Imported here: only configs with google_iam pay for google-auth.
    import google.auth
    import google.auth.transport.requests
    from google.auth import compute_engine

    request = google.auth.transport.requests.Request()
    credentials: Any
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        credentials, _ = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
            os.environ["GOOGLE_APPLICATION_CREDENTIALS"], scopes=[scope])
    else:
        # Straight to the metadata server (as monitor/gcp/tokens.py does): google.auth.default()
        # would first ping 169.254.169.254, ignoring GCE_METADATA_HOST.
        credentials = compute_engine.Credentials(scopes=[scope])  # type: ignore[no-untyped-call]
    credentials.refresh(request)
    expiry: dt.datetime | None = credentials.expiry
    # google-auth keeps naive UTC datetimes.
    expires = None if expiry is None else expiry.replace(tzinfo=dt.UTC).timestamp()
    return str(credentials.token), expires


# The process-wide access-token cache of sql probes (keyed by scope).
ACCESS_TOKENS = IdTokenProvider(fetch_google_access_token, what="a Google access token for scope",
                                event="access token fetched")


class PasswordSource:
    """The password of one probe, current as of this run."""

    def __init__(self, config: SqlProbeConfig, tokens: IdTokenProvider | None = None) -> None:
        self._iam = config.auth.google_iam
        self._tokens = tokens or ACCESS_TOKENS
        self._fixed = config.password_value() or ""
        self._path: Path | None = None
        self._stamp: tuple[int, int] | None = None
        if config.password_file is not None:
            # No stamp yet: the first run reads the file again, since it may
            # have changed between the config's load and now.
            self._path = config.password_file.path
        self.reads = 0  # how often the file was read (tests)

    async def get(self) -> str:
        if self._iam:
            return await self._tokens.token(SQL_LOGIN_SCOPE)
        if self._path is not None:
            self._reread()
        return self._fixed

    def _reread(self) -> None:
        assert self._path is not None
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        try:
            data = read_file(self._path, "password_file", MAX_SECRET_FILE_BYTES)
            text = data.decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            # The file's words (a path, an errno), never its content.
            what = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise ProbeFailure("auth", f"password_file changed and cannot be used: {what}") \
                from None
        self._fixed = text.rstrip("\r\n")
        self._stamp = stamp
        self.reads += 1


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1)  # gone: the read that follows says why
    return info.st_mtime_ns, info.st_size
