"""Google ID tokens for IAM-protected Cloud Run URLs (``auth: {google_id_token: ...}``).

A Cloud Run service that does not allow unauthenticated calls wants
``Authorization: Bearer <ID token>`` whose ``aud`` claim is the service URL
(or a custom audience). The http, lb and load probes and the http steps of a
journey get that header from :func:`id_token_header`.

Where the token comes from (google-auth does the work):

1. ``GOOGLE_APPLICATION_CREDENTIALS`` naming a service-account key file, or
   an ``impersonated_service_account`` file written by
   ``gcloud auth application-default login --impersonate-service-account``:
   the vantage outside GCP. (Plain user credentials cannot mint ID tokens
   for an arbitrary audience.)
2. Otherwise the metadata server, as on Cloud Run, GKE with Workload
   Identity and GCE: ``GET http://$GCE_METADATA_HOST/computeMetadata/v1/
   instance/service-accounts/default/identity?audience=...&format=full``
   with ``Metadata-Flavor: Google``. google-auth reads ``GCE_METADATA_HOST``
   (default ``metadata.google.internal``) once, when it is first imported.

A token is cached per audience until ``refresh_margin`` (5 min) before its
``exp`` claim; tokens live an hour, so a probe fetches about once in 55
minutes. Concurrent probes of one audience share one fetch. The fetch is
blocking (google-auth is synchronous) and runs in a worker thread, so the
event loop keeps probing while it waits.

Failure: a token that cannot be had fails the run with reason ``auth`` and
a detail naming the audience and the error, never the token. The token
itself is never logged, traced or put in a detail; the request header it
lands in is masked by the redactor's ``Authorization`` pattern.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from monitor.config.common import Auth
from monitor.net.fetch import Request
from monitor.probes.base import ProbeFailure, bounded

log = structlog.get_logger(__name__)

# ID tokens live 1 h. Refreshing 5 min early leaves room for the longest
# request a probe makes with a token fetched just before the margin.
REFRESH_MARGIN_SECONDS = 300.0
# Anything shaped like a JWT (or a long base64url run) in an error message is
# cut out: google-auth puts the token it could not parse into its ValueError.
_TOKENISH = re.compile(r"eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}|[A-Za-z0-9_-]{40,}")

# audience -> (token, expiry as epoch seconds, or None when unknown)
Fetcher = Callable[[str], tuple[str, float | None]]


def fetch_google_id_token(audience: str) -> tuple[str, float | None]:
    """Blocking: one ID token for ``audience`` from google-auth, and its expiry."""
    # Imported here: only configs with google_id_token pay for google-auth.
    import google.auth.transport.requests
    from google.auth import compute_engine
    from google.oauth2 import id_token

    request = google.auth.transport.requests.Request()
    credentials: Any
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        credentials = id_token.fetch_id_token_credentials(  # type: ignore[no-untyped-call]
            audience, request=request
        )
    else:
        # Straight to the metadata server: fetch_id_token_credentials() would
        # first ping 169.254.169.254 up to 3 times, ignoring GCE_METADATA_HOST.
        credentials = compute_engine.IDTokenCredentials(  # type: ignore[no-untyped-call]
            None, audience, use_metadata_identity_endpoint=True
        )
    credentials.refresh(request)
    expiry: dt.datetime | None = credentials.expiry
    # google-auth keeps naive UTC datetimes.
    expires = None if expiry is None else expiry.replace(tzinfo=dt.UTC).timestamp()
    return str(credentials.token), expires


@dataclass(frozen=True)
class _Cached:
    token: str
    expires: float | None


class IdTokenProvider:
    """Fetches and caches ID tokens per audience. One per process is enough."""

    def __init__(
        self,
        fetch: Fetcher = fetch_google_id_token,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        what: str = "a Google ID token for audience",
        event: str = "id token fetched",
    ) -> None:
        self._fetch = fetch
        self._what = what  # names the token in failure details
        self._event = event
        self._clock = clock
        self._margin = refresh_margin
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Task[_Cached]] = {}
        self.fetches = 0  # how many times a token was fetched (tests, debugging)

    def _fresh(self, audience: str) -> str | None:
        cached = self._cache.get(audience)
        if cached is None or cached.expires is None:
            return None
        if self._clock() >= cached.expires - self._margin:
            return None
        return cached.token

    async def token(self, audience: str) -> str:
        """A valid ID token for ``audience``; raises ProbeFailure('auth') if none."""
        token = self._fresh(audience)
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        task = self._inflight.get(audience)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._refresh(audience))
            self._inflight[audience] = task
            task.add_done_callback(lambda t: self._settle(audience, t))
        # shield: a probe cancelled by its timeout must not cancel the fetch
        # that other probes of the same audience wait for.
        cached = await asyncio.shield(task)
        return cached.token

    def _settle(self, audience: str, task: asyncio.Task[_Cached]) -> None:
        if self._inflight.get(audience) is task:
            del self._inflight[audience]
        if not task.cancelled():
            task.exception()  # retrieved: no "exception never retrieved" warning

    async def _refresh(self, audience: str) -> _Cached:
        self.fetches += 1
        try:
            token, expires = await asyncio.to_thread(self._fetch, audience)
        except ProbeFailure:
            raise
        except Exception as exc:
            raise ProbeFailure("auth", _describe(audience, exc, self._what)) from None
        cached = _Cached(token, expires)
        self._cache[audience] = cached
        left = None if expires is None else round(expires - self._clock())
        log.debug(self._event, audience=audience, expires_in_seconds=left)
        return cached

    async def header(self, auth: Auth | None) -> dict[str, str]:
        """``{"Authorization": "Bearer ..."}`` for ``auth``, or ``{}`` without it."""
        if auth is None or auth.google_id_token is None:
            return {}
        token = await self.token(auth.google_id_token.audience)
        return {"Authorization": f"Bearer {token}"}

    def clear(self) -> None:
        """Forget cached tokens (on config reload nothing needs this: audiences key it)."""
        self._cache.clear()


def _describe(audience: str, exc: BaseException,
              what: str = "a Google ID token for audience") -> str:
    """A detail for a failed fetch that cannot contain the token."""
    token = what
    if isinstance(exc, ValueError):
        # google-auth's decode errors (MalformedError is a ValueError too)
        # quote what they failed to decode: possibly a token.
        what = (f"{type(exc).__name__}: the answer could not be decoded "
                "(not quoted here: it may hold a token)")
    else:
        what = _TOKENISH.sub("<redacted>", f"{type(exc).__name__}: {exc}")
    return bounded(f"could not get {token} {audience!r}: {what}")


# The process-wide provider the probes use.
DEFAULT_PROVIDER = IdTokenProvider()


async def id_token_header(
    auth: Auth | None, provider: IdTokenProvider | None = None
) -> dict[str, str]:
    """The headers ``auth`` adds to a request: ``{}`` or an ``Authorization`` header.

    Raises :class:`ProbeFailure` with reason ``auth`` when no token can be had.
    """
    return await (provider or DEFAULT_PROVIDER).header(auth)


async def with_id_token(
    request: Request, auth: Auth | None, provider: IdTokenProvider | None = None
) -> Request:
    """``request`` with the ID-token header of ``auth`` replacing any of the same name."""
    extra = await id_token_header(auth, provider)
    if not extra:
        return request
    names = {name.lower() for name in extra}
    return replace(request, headers=[
        *(pair for pair in request.headers if pair[0].lower() not in names),
        *extra.items(),
    ])
