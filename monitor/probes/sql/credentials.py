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
import json
import os
from collections.abc import Callable
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
    import google.auth.transport.requests
    from google.auth import compute_engine

    request = google.auth.transport.requests.Request()
    credentials: Any
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        credentials = credentials_from_file(os.environ["GOOGLE_APPLICATION_CREDENTIALS"],
                                            [scope])
    else:
        # Straight to the metadata server (as monitor/gcp/tokens.py does): google.auth.default()
        # would first ping 169.254.169.254, ignoring GCE_METADATA_HOST.
        credentials = compute_engine.Credentials(scopes=[scope])  # type: ignore[no-untyped-call]
    credentials.refresh(request)
    expiry: dt.datetime | None = credentials.expiry
    # google-auth keeps naive UTC datetimes.
    expires = None if expiry is None else expiry.replace(tzinfo=dt.UTC).timestamp()
    return str(credentials.token), expires


def credentials_from_file(path: str, scopes: list[str]) -> Any:
    """The credentials of a ``GOOGLE_APPLICATION_CREDENTIALS`` file, scoped, built by
    the loader of the type the file names.

    google-auth deprecates its generic ``load_credentials_from_file`` (it builds
    whatever type a file names); this accepts the types that mint access tokens
    for Google APIs, which that function loaded: a service-account key, user
    credentials (``gcloud auth application-default login``), an impersonation
    file, and Workload Identity Federation (``external_account``, also its
    authorized-user form). What cannot be used raises google-auth's
    ``DefaultCredentialsError``, in the words of its generic loader.
    """
    # Checked first, as google-auth does: a missing file says so in these words.
    if not os.path.exists(path):
        raise _unusable(f"File {path} was not found.")
    with open(path, encoding="utf-8") as file:
        try:
            info = json.load(file)
        except ValueError as exc:  # also a file that is not UTF-8
            raise _unusable(f"File {path} is not a valid json file.", exc) from exc
    kind = info.get("type") if isinstance(info, dict) else None
    loader = _LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None:
        raise _unusable(f"The file {path} does not have a valid type. Type is {kind}, "
                        f"expected one of {tuple(_LOADERS)}.")
    try:
        return loader(info, scopes)
    except ValueError as exc:
        raise _unusable(f"Failed to load {kind} credentials from {path}", exc) from exc


def _unusable(*args: object) -> Exception:
    from google.auth import exceptions

    return exceptions.DefaultCredentialsError(*args)  # type: ignore[no-untyped-call]


def _service_account(info: dict[str, Any], scopes: list[str]) -> Any:
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        info, scopes=scopes)


def _authorized_user(info: dict[str, Any], scopes: list[str]) -> Any:
    from google.oauth2 import credentials

    return credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
        info, scopes=scopes)


def _impersonated(info: dict[str, Any], scopes: list[str]) -> Any:
    from google.auth import impersonated_credentials

    loader = impersonated_credentials.Credentials.from_impersonated_service_account_info
    return loader(info, scopes=scopes)  # type: ignore[no-untyped-call]


def _external_account(info: dict[str, Any], scopes: list[str]) -> Any:
    # The three kinds of Workload Identity Federation file, told apart as google-auth does.
    if info.get("subject_token_type") == "urn:ietf:params:aws:token-type:aws4_request":
        from google.auth import aws

        return aws.Credentials.from_info(info, scopes=scopes)  # type: ignore[no-untyped-call]
    if (info.get("credential_source") or {}).get("executable") is not None:
        from google.auth import pluggable

        return pluggable.Credentials.from_info(  # type: ignore[no-untyped-call]
            info, scopes=scopes)
    from google.auth import identity_pool

    return identity_pool.Credentials.from_info(  # type: ignore[no-untyped-call]
        info, scopes=scopes)


def _external_account_authorized_user(info: dict[str, Any], scopes: list[str]) -> Any:
    from google.auth import external_account_authorized_user

    # Its scopes are those granted at sign-in (google-auth passes none either).
    return external_account_authorized_user.Credentials.from_info(  # type: ignore[no-untyped-call]
        info)


_LOADERS: dict[str, Callable[[dict[str, Any], list[str]], Any]] = {
    "service_account": _service_account,
    "authorized_user": _authorized_user,
    "impersonated_service_account": _impersonated,
    "external_account": _external_account,
    "external_account_authorized_user": _external_account_authorized_user,
}


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
