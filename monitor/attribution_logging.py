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

Credentials: Application Default Credentials through google-auth
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC file, else the metadata
server at ``GCE_METADATA_HOST``, as on Cloud Run), with the
``logging.read`` scope.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp

from monitor import USER_AGENT

SCOPES = ("https://www.googleapis.com/auth/logging.read",)
# A page of 100 LogEntry objects is ~100 KiB; more than this is not an answer.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_ERROR_CHARS = 200
# google-auth may quote what it got back in its errors: never a token in a detail.
_TOKENISH = re.compile(r"ya29\.[A-Za-z0-9._-]+|eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}"
                       r"|[A-Za-z0-9_-]{40,}")


class LookupFailed(Exception):
    """The Logging API could not be asked or did not answer usably."""


class GoogleToken:
    """An access token from ADC, refreshed in a thread when google-auth says so."""

    def __init__(self) -> None:
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    async def header(self) -> dict[str, str]:
        async with self._lock:
            if self._credentials is None or not self._credentials.valid:
                await asyncio.to_thread(self._refresh)
        return {"Authorization": f"Bearer {self._credentials.token}"}

    def _refresh(self) -> None:
        # Imported here: only configs with attribution pay for google-auth's transport.
        import google.auth
        import google.auth.transport.requests

        try:
            if self._credentials is None:
                self._credentials, _ = google.auth.default(scopes=list(SCOPES))
            self._credentials.refresh(google.auth.transport.requests.Request())
        except Exception as exc:  # every google-auth failure is a failed lookup
            self._credentials = None
            text = _TOKENISH.sub("<redacted>", str(exc))[:MAX_ERROR_CHARS]
            raise LookupFailed(f"no credentials: {type(exc).__name__}: {text}") from None


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
