"""/token and /v1/token over HTTP, against the real OIDC provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry

from harness.oidc import AuthStateStore, OidcProvider, auth_state_for
from services.contract import TOKEN_URL_ENV
from services.metrics.status import StatusReader
from services.runtime.webapp import make_app
from services.tokenhelper.broker import TokenBroker
from services.tokenhelper.main import _health_details
from services.tokenhelper.provider import Provider
from services.tokenhelper.web import add_routes


async def test_200_concurrent_requests_one_refresh_then_503_when_the_provider_is_gone(
        provider: OidcProvider, aiohttp_client: Any) -> None:
    store = AuthStateStore(auth_state_for(provider, "alice"))
    now = [time.time()]
    broker = TokenBroker(store, "alice",  # type: ignore[arg-type]
                         Provider(provider.issuer, "jupyterhub", "secret"), min_valid=60,
                         clock=lambda: now[0])
    app = make_app(CollectorRegistry(), healthy=lambda: broker.current is not None,
                   details=lambda: _health_details(broker, None))
    add_routes(app, broker)
    client = await aiohttp_client(app)
    async def get(path: str) -> tuple[int, str]:
        async with client.get(path) as response:
            return response.status, await response.text()

    answers = await asyncio.gather(*(get("/token") for _ in range(200)))
    assert {status for status, _ in answers} == {200}
    tokens = {body.strip() for _, body in answers}
    assert len(tokens) == 1 and provider.userinfo_status(tokens.pop()) == 200
    assert broker.refreshes == 1
    assert provider.log_path.read_text().count("POST /oauth2/token") == 2  # login + 1

    assert broker.provider_problem is None
    reader = StatusReader(env={TOKEN_URL_ENV: str(client.make_url("")).rstrip("/")})
    assert await reader.read_tokens() == {"state": "ok"}

    status, body = await get("/v1/token?min_valid=abc")
    assert status == 400 and "min_valid" in body

    provider.stop()
    now[0] += 3600 - 30  # below min_valid: the refresh fails, the cache still serves
    assert (await get("/token"))[0] == 200
    now[0] += 60  # expired
    status, body = await get("/token")
    assert status == 503
    assert "provider is unreachable and the last access token has expired" in body
    async with client.get("/v1/token") as response:
        assert response.status == 503
        assert (await response.json())["error"] == "token_unavailable"
        assert response.headers["Cache-Control"] == "no-store"

    # Not silent: /healthz names the problem with the NetworkPolicy hint, and the
    # notebook's status API (what the status bar warns from) passes it on.
    async with client.get("/healthz") as response:
        health = await response.json()
    assert health["provider"]["error"].startswith("refresh failed")
    assert "singleuser.networkPolicy.egress" in health["provider"]["hint"]
    tokens = await reader.read_tokens()
    assert tokens is not None and tokens["state"] == "failing"
    assert tokens["problem"] == health["provider"]["error"] and tokens["hint"]

