"""monitor/probes/sql/credentials.py: the GOOGLE_APPLICATION_CREDENTIALS file,
loaded by its own type's google-auth loader (no deprecated generic loader).

Tokens are asked of fake OAuth endpoints on 127.0.0.1 named in the files
(``token_uri`` of a service-account key, ``token_url`` of a Workload Identity
Federation file); types whose files cannot name their token endpoint (user
credentials, impersonation) are checked as built, never refreshed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from monitor.gcp.tokens import IdTokenProvider
from monitor.probes.base import ProbeFailure
from monitor.probes.sql.credentials import (
    SQL_LOGIN_SCOPE,
    credentials_from_file,
    fetch_google_access_token,
)
from tests.support.http_servers import serve_app

EMAIL = "monitor@demo.iam.gserviceaccount.com"


class TokenEndpoint:
    """A fake OAuth 2.0 token endpoint (also the STS token exchange): what it was sent."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.url = ""

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.forms.append({k: str(v) for k, v in form.items()})
        answer: dict[str, Any] = {"access_token": f"ya29.fake-{len(self.forms)}",
                                  "expires_in": 3600, "token_type": "Bearer"}
        if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange":
            answer["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        return web.json_response(answer)


@pytest.fixture
async def endpoint() -> AsyncIterator[TokenEndpoint]:
    served = TokenEndpoint()
    app = web.Application()
    app.router.add_post("/token", served.token)
    async with serve_app(app) as server:
        served.url = f"http://127.0.0.1:{server.port}/token"
        yield served


def service_account_key(token_uri: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "demo", "private_key_id": "k1",
            "private_key": pem, "client_email": EMAIL, "client_id": "1",
            "token_uri": token_uri}


def write(tmp_path: Path, info: object, name: str = "credentials.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(info))
    return str(path)


async def fetch_with(path: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, float | None]:
    """fetch_google_access_token as a probe runs it (in a thread), DeprecationWarning an error."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", path)

    def fetch() -> tuple[str, float | None]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            return fetch_google_access_token(SQL_LOGIN_SCOPE)

    return await asyncio.to_thread(fetch)


async def test_service_account_key_gets_a_scoped_token_from_its_token_uri(
        endpoint: TokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service-account key: a JWT grant for the sql login scope, signed by the key."""
    path = write(tmp_path, service_account_key(endpoint.url))
    token, expires = await fetch_with(path, monkeypatch)
    assert token == "ya29.fake-1" and expires is not None
    [form] = endpoint.forms
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = json.loads(base64.urlsafe_b64decode(form["assertion"].split(".")[1] + "=="))
    assert (claims["iss"], claims["scope"]) == (EMAIL, SQL_LOGIN_SCOPE)


async def test_workload_identity_federation_file_exchanges_its_subject_token(
        endpoint: TokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An external_account file (identity pool, file source): an STS exchange of the
    subject token for an access token with the sql login scope."""
    subject = tmp_path / "subject.jwt"
    subject.write_text("eyJ.subject.token")
    path = write(tmp_path, {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/"
                    "pool/providers/provider",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": endpoint.url,
        "credential_source": {"file": str(subject)},
    })
    token, _ = await fetch_with(path, monkeypatch)
    assert token == "ya29.fake-1"
    [form] = endpoint.forms
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert form["subject_token"] == "eyJ.subject.token"
    assert form["scope"] == SQL_LOGIN_SCOPE


def test_user_and_impersonation_files_load_with_the_scope(tmp_path: Path) -> None:
    """authorized_user (application-default login) and impersonated_service_account
    files are built by their own loaders with the scope (their token endpoints are
    Google's, so they are not refreshed here)."""
    from google.auth import impersonated_credentials
    from google.oauth2 import credentials

    user = {"type": "authorized_user", "client_id": "c", "client_secret": "s",
            "refresh_token": "r"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        loaded = credentials_from_file(write(tmp_path, user, "user.json"), [SQL_LOGIN_SCOPE])
        impersonating = credentials_from_file(write(tmp_path, {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/"
                f"projects/-/serviceAccounts/{EMAIL}:generateAccessToken",
            "source_credentials": user,
        }, "impersonation.json"), [SQL_LOGIN_SCOPE])
    assert isinstance(loaded, credentials.Credentials)
    assert loaded.scopes == [SQL_LOGIN_SCOPE]
    assert isinstance(impersonating, impersonated_credentials.Credentials)
    assert impersonating._target_scopes == [SQL_LOGIN_SCOPE]
    assert impersonating.service_account_email == EMAIL


@pytest.mark.parametrize(("content", "says"), [
    pytest.param(None, "was not found", id="missing"),
    pytest.param("{not json", "is not a valid json file", id="not-json"),
    pytest.param({"type": "gdch_service_account"},
                 "does not have a valid type. Type is gdch_service_account", id="other-type"),
    pytest.param(["a", "list"], "does not have a valid type. Type is None", id="not-an-object"),
    pytest.param({"type": "service_account", "client_email": EMAIL},
                 "Failed to load service_account credentials", id="incomplete-key"),
])
async def test_an_unusable_file_fails_the_run_with_auth(
        content: object, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that is missing, not JSON, of a type that mints no access token, or
    incomplete: reason auth, naming the scope and what is wrong with the file."""
    path = tmp_path / "credentials.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_text(json.dumps(content))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    tokens = IdTokenProvider(fetch_google_access_token, what="a Google access token for scope")
    with pytest.raises(ProbeFailure) as failure:
        await tokens.token(SQL_LOGIN_SCOPE)
    assert failure.value.reason == "auth"
    assert f"could not get a Google access token for scope '{SQL_LOGIN_SCOPE}'" in \
        failure.value.detail
    assert "DefaultCredentialsError" in failure.value.detail and says in failure.value.detail
