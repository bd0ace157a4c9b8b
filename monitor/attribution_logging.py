"""Cloud Logging's REST ``entries:list``, read with aiohttp and a google-auth token.

Wire format (Cloud Logging API reference, "Method: entries.list"):
``POST {endpoint}/v2/entries:list`` with a JSON body ``{"resourceNames":
["projects/P"], "filter", "orderBy", "pageSize", "pageToken"}``; the answer is
``{"entries": [LogEntry...], "nextPageToken"}`` and an error is
``{"error": {"code", "message", "status"}}`` (Google's "API design guide,
Errors").

Why not google-cloud-logging: its client is synchronous (requests), so each
lookup would hold a worker thread of the default executor, which the probes'
DNS lookups share (``loop.getaddrinfo``); a hanging Logging API would then
delay probes. aiohttp keeps the lookup on the event loop with its own
timeout. Only the token refresh (about once an hour) runs in a thread.

Credentials: google-auth, as everywhere in monitor
(``GOOGLE_APPLICATION_CREDENTIALS``, else the metadata server at
``GCE_METADATA_HOST``, as on Cloud Run), with the ``logging.read`` scope.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from monitor import USER_AGENT
from monitor.gcp.tokens import IdTokenProvider
from monitor.probes.base import ProbeFailure
from monitor.probes.sql.credentials import fetch_google_access_token

SCOPES = ("https://www.googleapis.com/auth/logging.read",)
# A page of 100 LogEntry objects is ~100 KiB; more than this is not an answer.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_ERROR_CHARS = 200


class LookupFailed(Exception):
    """The Logging API could not be asked or did not answer usably."""


class GoogleToken:
    """An access token with the ``logging.read`` scope, from the project's
    shared token code: the key file of ``GOOGLE_APPLICATION_CREDENTIALS`` when
    set, else the metadata server (as the sql probe's IAM login and the ID
    tokens do); cached until 5 minutes before it expires, fetched in a worker
    thread about once an hour."""

    def __init__(self, provider: IdTokenProvider | None = None) -> None:
        self._provider = provider or IdTokenProvider(
            fetch_google_access_token, what="a Google access token for scope",
            event="access token fetched")

    async def header(self) -> dict[str, str]:
        try:
            token = await self._provider.token(SCOPES[0])
        except ProbeFailure as failure:  # the provider's detail never holds a token
            raise LookupFailed(f"no credentials: {failure.detail[:MAX_ERROR_CHARS]}") from None
        return {"Authorization": f"Bearer {token}"}


class LoggingClient:
    """``entries:list`` with paging, on one aiohttp session."""

    def __init__(self, endpoint: str, token: GoogleToken | None = None) -> None:
        self.url = endpoint.rstrip("/") + "/v2/entries:list"
        self.token = token or GoogleToken()
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def list_entries(self, project: str, log_filter: str, *, page_size: int,
                           max_pages: int) -> tuple[list[dict[str, Any]], int]:
        """Entries matching ``log_filter``, newest first, and the pages read."""
        entries: list[dict[str, Any]] = []
        token: str | None = None
        pages = 0
        while pages < max_pages:
            body: dict[str, Any] = {
                "resourceNames": [f"projects/{project}"], "filter": log_filter,
                "orderBy": "timestamp desc", "pageSize": page_size,
            }
            if token:
                body["pageToken"] = token
            answer = await self._post(body)
            pages += 1
            found = answer.get("entries") or []
            if not isinstance(found, list):
                raise LookupFailed("entries:list answered entries that are not a list")
            entries += [e for e in found if isinstance(e, dict)]
            token = answer.get("nextPageToken") or None
            if not isinstance(token, str | None) or token is None:
                break
        return entries, pages

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = await self.token.header()
        try:
            async with self._get_session().post(self.url, json=body, headers=headers,
                                                allow_redirects=False) as response:
                raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
                status = response.status
        except aiohttp.ClientError as exc:
            raise LookupFailed(f"entries:list: {type(exc).__name__}: "
                               f"{str(exc)[:MAX_ERROR_CHARS]}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise LookupFailed(f"entries:list answered more than {MAX_RESPONSE_BYTES} bytes")
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = None
        if status != 200:
            raise LookupFailed(f"entries:list answered HTTP {status}{_error(answer)}")
        if not isinstance(answer, dict):
            raise LookupFailed("entries:list answered something that is not a JSON object")
        return answer


def _error(answer: Any) -> str:
    """``: STATUS message`` from Google's error body, when there is one."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return ""
    status = str(error.get("status", ""))[:40]
    message = str(error.get("message", ""))[:MAX_ERROR_CHARS]
    return f": {status} {message}".rstrip()
