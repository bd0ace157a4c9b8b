"""monitor.gcp.tokens against a fake GCE metadata server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from monitor.config.common import Auth, GoogleIdToken
from monitor.gcp.tokens import REFRESH_MARGIN_SECONDS, IdTokenProvider, id_token_header
from monitor.probes.base import ProbeFailure
from tests.support.metadata import (
    Clock,
    FakeMetadata,
    fake_metadata,
    make_jwt,
    point_google_auth_at,
)

AUDIENCE = "https://backend-abc123-uc.a.run.app"


@pytest.fixture
async def metadata() -> AsyncIterator[FakeMetadata]:
    """A fake metadata server on 127.0.0.1 with a hand-moved clock."""
    async with fake_metadata() as fake:
        yield fake


@pytest.fixture
def metadata_env(metadata: FakeMetadata, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point google-auth at the fake through GCE_METADATA_HOST, as a deployment would."""
    with point_google_auth_at(metadata.host, monkeypatch):
        yield


def auth(audience: str = AUDIENCE) -> Auth:
    return Auth(google_id_token=GoogleIdToken(audience=audience))


@pytest.mark.usefixtures("metadata_env")
async def test_header_carries_the_token_from_the_metadata_server(metadata: FakeMetadata) -> None:
    """The header is `Authorization: Bearer <token>` with the token the server issued."""
    provider = IdTokenProvider(clock=metadata.clock)
    headers = await id_token_header(auth(), provider)
    assert headers == {"Authorization": f"Bearer {metadata.issued[0]}"}
    assert metadata.calls[0]["audience"] == AUDIENCE
    assert metadata.calls[0]["format"] == "full"


async def test_no_auth_no_header() -> None:
    """Without google_id_token nothing is fetched and no header is added."""
    provider = IdTokenProvider(fetch=lambda _: pytest.fail("fetched"))
    assert await id_token_header(None, provider) == {}
    assert await id_token_header(Auth(), provider) == {}


@pytest.mark.usefixtures("metadata_env")
async def test_token_is_cached_until_the_refresh_margin(metadata: FakeMetadata) -> None:
    """Within its lifetime less the margin the cached token is reused, then refreshed."""
    clock = metadata.clock
    provider = IdTokenProvider(clock=clock)
    first = await provider.token(AUDIENCE)
    clock.now += 3600 - REFRESH_MARGIN_SECONDS - 1
    assert await provider.token(AUDIENCE) == first
    assert len(metadata.calls) == 1
    clock.now += 1  # now exactly at exp - margin: refresh
    second = await provider.token(AUDIENCE)
    assert second != first
    assert second == metadata.issued[1]
    assert len(metadata.calls) == 2


@pytest.mark.usefixtures("metadata_env")
async def test_tokens_are_cached_per_audience(metadata: FakeMetadata) -> None:
    """Two audiences get two tokens, each with its own aud claim."""
    provider = IdTokenProvider(clock=metadata.clock)
    one = await provider.token(AUDIENCE)
    other = await provider.token("https://auth-xyz-uc.a.run.app")
    assert one != other
    assert [c["audience"] for c in metadata.calls] == [AUDIENCE, "https://auth-xyz-uc.a.run.app"]
    assert await provider.token(AUDIENCE) == one
    assert len(metadata.calls) == 2


@pytest.mark.usefixtures("metadata_env")
async def test_concurrent_callers_share_one_fetch(metadata: FakeMetadata) -> None:
    """20 probes asking at once cause one metadata request, and all get the token."""
    provider = IdTokenProvider(clock=metadata.clock)
    tokens = await asyncio.wait_for(
        asyncio.gather(*(provider.token(AUDIENCE) for _ in range(20))), timeout=30
    )
    assert set(tokens) == {metadata.issued[0]}
    assert len(metadata.calls) == 1


@pytest.mark.usefixtures("metadata_env")
async def test_metadata_error_is_an_auth_failure(metadata: FakeMetadata) -> None:
    """A refusing metadata server fails the run with reason auth naming the audience."""
    metadata.status = 404
    provider = IdTokenProvider(clock=metadata.clock)
    with pytest.raises(ProbeFailure) as caught:
        await provider.token(AUDIENCE)
    assert caught.value.reason == "auth"
    assert AUDIENCE in caught.value.detail
    assert "404" in caught.value.detail
    # No negative caching: the next run asks again and succeeds.
    metadata.status = 200
    assert await provider.token(AUDIENCE) == metadata.issued[0]


@pytest.mark.usefixtures("metadata_env")
async def test_malformed_token_is_not_quoted(metadata: FakeMetadata) -> None:
    """A non-JWT answer fails with auth, and the answer is not echoed in the detail."""
    metadata.body = "not-a-jwt-but-maybe-secret-value"
    provider = IdTokenProvider(clock=metadata.clock)
    with pytest.raises(ProbeFailure) as caught:
        await provider.token(AUDIENCE)
    assert caught.value.reason == "auth"
    assert "not-a-jwt-but-maybe-secret-value" not in caught.value.detail
    assert "could not be decoded" in caught.value.detail


@pytest.mark.usefixtures("metadata_env")
async def test_token_never_logged(metadata: FakeMetadata, caplog: pytest.LogCaptureFixture) -> None:
    """With debug logging on (ours and google-auth's), no log line holds the token."""
    google_logger = logging.getLogger("google")
    google_logger.addHandler(caplog.handler)  # google-auth stops propagation itself
    caplog.set_level(logging.DEBUG)
    google_logger.setLevel(logging.DEBUG)
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        clock = metadata.clock
        provider = IdTokenProvider(clock=clock)
        with capture_logs() as events:
            await provider.token(AUDIENCE)
            clock.now += 3600
            await provider.token(AUDIENCE)
    finally:
        google_logger.removeHandler(caplog.handler)
        google_logger.setLevel(logging.NOTSET)
        structlog.configure(**saved)
    assert len(metadata.issued) == 2
    assert any(e["event"] == "id token fetched" for e in events)  # we did log something
    logged = repr(events) + caplog.text
    for token in metadata.issued:
        for part in token.split("."):
            assert part not in logged


async def test_expiry_comes_from_the_fetcher() -> None:
    """The cache honours the expiry the fetch reports, with an injected fetch."""
    clock = Clock(1000.0)
    served: list[str] = []

    def fetch(audience: str) -> tuple[str, float | None]:
        served.append(f"t{len(served)}")
        return served[-1], clock.now + 600

    provider = IdTokenProvider(fetch, clock=clock, refresh_margin=60)
    assert await provider.token("a") == "t0"
    clock.now += 539
    assert await provider.token("a") == "t0"
    clock.now += 1
    assert await provider.token("a") == "t1"


async def test_unknown_expiry_is_not_cached() -> None:
    """A token without a known expiry is fetched again on every run."""
    calls = 0

    def fetch(audience: str) -> tuple[str, float | None]:
        nonlocal calls
        calls += 1
        return f"t{calls}", None

    provider = IdTokenProvider(fetch)
    assert await provider.token("a") == "t1"
    assert await provider.token("a") == "t2"


async def test_fresh_process_honours_gce_metadata_host(metadata: FakeMetadata) -> None:
    """A new process with only GCE_METADATA_HOST set gets its token from the fake."""
    code = (
        "import asyncio; from monitor.gcp.tokens import id_token_header; "
        "from monitor.config.common import Auth, GoogleIdToken; "
        f"a = Auth(google_id_token=GoogleIdToken(audience={AUDIENCE!r})); "
        "print(asyncio.run(id_token_header(a))['Authorization'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env["GCE_METADATA_HOST"] = metadata.host
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    # The last line: structlog's default config prints its debug line first.
    assert out.decode().strip().splitlines()[-1] == f"Bearer {metadata.issued[0]}"


async def test_service_account_key_outside_gcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With GOOGLE_APPLICATION_CREDENTIALS (a vantage outside GCP) the key's token_uri is used."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    assertions: list[dict[str, object]] = []
    issued: list[str] = []

    async def token_endpoint(request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        payload = str(form["assertion"]).split(".")[1]
        assertions.append(json.loads(base64.urlsafe_b64decode(payload + "==")))
        issued.append(make_jwt(AUDIENCE, 1_800_003_600, len(issued)))
        return web.json_response({"id_token": issued[-1]})

    app = web.Application()
    app.router.add_post("/token", token_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        key_file = tmp_path / "sa.json"
        key_file.write_text(json.dumps({
            "type": "service_account", "project_id": "demo", "private_key_id": "k1",
            "private_key": pem, "client_email": "monitor@demo.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"http://127.0.0.1:{port}/token",
        }))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        provider = IdTokenProvider(clock=Clock(1_800_000_000.0))
        headers = await provider.header(auth())
    finally:
        await runner.cleanup()
    assert headers == {"Authorization": f"Bearer {issued[0]}"}
    assert assertions[0]["target_audience"] == AUDIENCE
    assert assertions[0]["iss"] == "monitor@demo.iam.gserviceaccount.com"
