"""A fake GCE metadata server on 127.0.0.1, for the Google credential paths.

No real metadata server can run here, so this one speaks the documented wire
format (Compute Engine "About VM metadata" and "Authenticate workloads using
service accounts"; google-auth's ``google/auth/compute_engine/_metadata.py``
is the client it must satisfy):

- ``GET .../service-accounts/default/identity?audience=A&format=full``:
  an ID token (a JWT) as plain text (monitor/gcp/tokens.py);
- ``GET .../service-accounts/default/?recursive=true``: the account's
  ``email``, ``scopes`` and ``aliases`` as JSON (google-auth asks for it
  before every access token);
- ``GET .../service-accounts/default/token?scopes=S``: an OAuth access token
  as JSON ``{"access_token", "expires_in", "token_type"}`` (the sql probe's
  ``auth: {google_iam: true}``).

Every request must carry ``Metadata-Flavor: Google``, as on the real server.
google-auth reads ``GCE_METADATA_HOST`` when first imported:
:func:`point_google_auth_at` sets it and reloads that module.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.support.http_servers import serve_app

ACCOUNT = "/computeMetadata/v1/instance/service-accounts/default"
IDENTITY = f"{ACCOUNT}/identity"
EMAIL = "monitor@project.iam.gserviceaccount.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(audience: str, exp: int, serial: int) -> str:
    """An unsigned JWT-shaped token: google-auth only decodes it to read `exp`."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({
        "aud": audience, "exp": exp, "iat": exp - 3600,
        "iss": "https://accounts.google.com", "sub": "1234567890", "serial": serial,
    }).encode())
    return f"{header}.{payload}.{_b64(b'signature-' + str(serial).encode())}"


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeMetadata:
    """What the fake metadata server saw and what it should answer."""

    clock: Clock
    lifetime: int = 3600
    status: int = 200
    body: str | None = None  # overrides the token when set
    calls: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    # Access tokens handed out, and the scopes asked for each.
    access_tokens: list[str] = field(default_factory=list)
    token_calls: list[dict[str, str]] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)  # access tokens to hand out first
    host: str = ""

    @staticmethod
    def _refused(request: web.Request) -> web.Response | None:
        # The real server refuses requests without this header (SSRF guard).
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.")
        return None

    async def identity(self, request: web.Request) -> web.Response:
        self.calls.append(dict(request.query))
        refused = self._refused(request)
        if refused is not None:
            return refused
        if "audience" not in request.query:
            return web.Response(status=400, text="non-empty audience parameter required")
        if self.status != 200:
            return web.Response(status=self.status, text="metadata says no")
        token = self.body if self.body is not None else make_jwt(
            request.query["audience"], int(self.clock.now) + self.lifetime, len(self.issued)
        )
        self.issued.append(token)
        return web.Response(text=token, headers={"Metadata-Flavor": "Google"})

    async def account(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return web.json_response(
            {"email": EMAIL, "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
             "aliases": ["default"]}, headers={"Metadata-Flavor": "Google"})

    async def token(self, request: web.Request) -> web.Response:
        self.token_calls.append(dict(request.query))
        refused = self._refused(request)
        if refused is not None:
            return refused
        if self.status != 200:
            return web.Response(status=self.status, text="metadata says no")
        # Shaped like Google's (ya29. and base64url), unique per call.
        served = len(self.access_tokens)
        token = self.queue[served] if served < len(self.queue) else "ya29.c." + _b64(
            os.urandom(96))
        self.access_tokens.append(token)
        return web.json_response(
            {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"},
            headers={"Metadata-Flavor": "Google"})


@asynccontextmanager
async def fake_metadata(now: float = 1_800_000_000.0) -> AsyncIterator[FakeMetadata]:
    """The fake on 127.0.0.1, with a hand-moved clock; ``host`` is ``IP:port``."""
    fake = FakeMetadata(clock=Clock(now))
    app = web.Application()
    app.router.add_get(IDENTITY, fake.identity)
    app.router.add_get(f"{ACCOUNT}/", fake.account)
    app.router.add_get(f"{ACCOUNT}/token", fake.token)
    async with serve_app(app) as served:
        fake.host = f"127.0.0.1:{served.port}"
        yield fake


@contextmanager
def point_google_auth_at(host: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """google-auth's metadata client aimed at ``host``, as a deployment would set it."""
    from google.auth.compute_engine import _metadata

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", host)
    monkeypatch.setenv("GCE_METADATA_IP", host)
    # google-auth reads the variable when first imported; re-read it here.
    importlib.reload(_metadata)
    try:
        yield
    finally:
        monkeypatch.undo()
        importlib.reload(_metadata)
