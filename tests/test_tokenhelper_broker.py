"""The broker against the real OIDC provider: single-flight refresh, outages, invalid_grant.

The hub's side (reading auth_state with a scoped token) is exercised for real in
test_tokenhelper_hub.py; here a stand-in hands the broker the auth_state a real login made.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from harness.oidc import AuthStateStore, OidcProvider, auth_state_for
from services.runtime.retry import Backoff
from services.tokenhelper.broker import TokenBroker, TokenUnavailable
from services.tokenhelper.narrowing import Narrowing
from services.tokenhelper.provider import Provider
from services.tokenhelper.tokens import after_refresh, from_auth_state, jwt_expiry
from services.tokenhelper.write_back import WriteBack


def broker_for(provider: OidcProvider, store: AuthStateStore, **kwargs: Any) -> TokenBroker:
    client = Provider(provider.issuer, "jupyterhub", "secret")
    return TokenBroker(store, "alice", client, min_valid=60, **kwargs)  # type: ignore[arg-type]


async def test_200_concurrent_requests_cause_exactly_one_refresh(provider: OidcProvider) -> None:
    store = AuthStateStore(auth_state_for(provider, "alice"))
    broker = broker_for(provider, store)
    tokens = await asyncio.gather(*(broker.token() for _ in range(200)))
    assert broker.refreshes == 1
    assert len({t.value for t in tokens}) == 1
    assert provider.userinfo_status(tokens[0].value) == 200
    assert tokens[0].value != store.state["access_token"]  # a refreshed one
    # cached afterwards: no further refresh, no further hub read
    await asyncio.gather(*(broker.token() for _ in range(200)))
    assert broker.refreshes == 1 and store.reads == 1
    log = provider.log_path.read_text()
    assert log.count("POST /oauth2/token") == 2  # the login's code exchange + one refresh


async def test_provider_down_serves_the_cached_token_then_a_clear_error(
        provider: OidcProvider) -> None:
    store = AuthStateStore(auth_state_for(provider, "alice"))
    now = [time.time()]
    broker = broker_for(provider, store, clock=lambda: now[0])
    fresh = await broker.token()
    provider.stop()

    now[0] += 3600 - 30  # 30 s left: below min_valid, the refresh fails, the cache is served
    assert (await broker.token()).value == fresh.value
    now[0] += 60  # expired
    with pytest.raises(TokenUnavailable, match="provider is unreachable and the last access "
                                               "token has expired"):
        await broker.token()


async def test_invalid_grant_rereads_auth_state_once(provider: OidcProvider) -> None:
    first = auth_state_for(provider, "alice")
    store = AuthStateStore({**first, "refresh_token": "revoked-or-rotated"})
    broker = broker_for(provider, store)
    with pytest.raises(TokenUnavailable, match="rejected the refresh token"):
        await broker.token()
    assert store.reads == 2  # the start, and once more after invalid_grant

    # The hub refreshed meanwhile: the second read has a working refresh token.
    reads = iter([{**first, "refresh_token": "stale"}, first])
    store.get_auth_state = lambda user, **_: _value(next(reads))  # type: ignore[method-assign]
    broker = broker_for(provider, store)
    token = await broker.token()
    assert provider.userinfo_status(token.value) == 200


async def _value(state: dict[str, Any]) -> dict[str, Any]:
    return state


def test_tokens_from_auth_state_and_refresh_responses() -> None:
    jwt = "e30.eyJleHAiOjE4MDAwMDAwMDB9.sig"  # {"exp": 1800000000}
    assert jwt_expiry(jwt) == 1800000000
    assert jwt_expiry("opaque-token") is None
    assert jwt_expiry("a.!!!.c") is None
    state = {"access_token": jwt, "refresh_token": "r1", "id_token": "i1"}
    tokens = from_auth_state(state)
    assert tokens.access.expires_at == 1800000000 and tokens.refresh_token == "r1"
    with pytest.raises(ValueError, match="no access_token"):
        from_auth_state({"refresh_token": "r"})

    same = after_refresh(tokens, {"access_token": "a2", "expires_in": 300}, now=1000)
    assert same.access.expires_at == 1300 and same.access.lifetime == 300
    assert same.refresh_token == "r1"  # not rotated: keep the old one
    rotated = after_refresh(tokens, {"access_token": "a3", "expires_in": "60",
                                     "refresh_token": "r2"}, now=1000)
    assert rotated.refresh_token == "r2" and rotated.auth_state["refresh_token"] == "r2"
    assert "r1" not in repr(rotated) and "a3" not in repr(rotated)  # secrets stay out of logs


class RotatingProvider:
    """A stand-in for a provider that rotates refresh tokens (one use each), until the
    glewlwyd-based test lands: it checks the broker's write-back logic, not a provider."""

    def __init__(self) -> None:
        self.valid = {"r0"}
        self.issued = 0
        self.asked: list[dict[str, str]] = []

    async def refresh(self, refresh_token: str,
                      fields: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()
                      ) -> dict[str, Any]:
        from services.tokenhelper.provider import InvalidGrant

        if refresh_token not in self.valid:
            raise InvalidGrant("refresh token already used")
        self.asked.append(dict(fields))
        self.valid.discard(refresh_token)
        self.issued += 1
        new = f"r{self.issued}"
        self.valid.add(new)
        return {"access_token": f"a{self.issued}", "expires_in": 300, "refresh_token": new}


async def test_rotated_refresh_tokens_are_written_back_to_the_hub() -> None:
    store = AuthStateStore({"access_token": "a0", "refresh_token": "r0", "id_token": "i0"})
    provider = RotatingProvider()
    now = [1_000_000.0]
    writer = WriteBack(store, "alice")  # type: ignore[arg-type]
    broker = TokenBroker(store, "alice", provider, min_valid=60,  # type: ignore[arg-type]
                         write_back=writer, clock=lambda: now[0])
    assert (await broker.token()).value == "a1"
    assert await writer.flush()
    assert [w["refresh_token"] for w in store.writes] == ["r1"]
    assert store.writes[0]["id_token"] == "i0"  # the rest of auth_state is kept

    # The hub refreshed meanwhile (OAuthenticator.refresh_user) and used up r1.
    provider.valid = {"r-hub"}
    store.state = {"access_token": "a-hub", "refresh_token": "r-hub"}
    now[0] += 290  # 10 s left: refresh due
    assert (await broker.token()).value == "a2"  # invalid_grant, re-read auth_state, retry
    assert await writer.flush()
    assert store.writes[-1]["refresh_token"] == "r2"


async def test_a_narrower_token_spends_the_same_refresh_token_and_keeps_the_chain() -> None:
    """With a rotating provider, a refresh for an audience uses up the refresh token like any
    other: the new one becomes the default chain's and is written back; the default token and
    its listeners (the WLCG file) are untouched."""
    store = AuthStateStore({"access_token": "a0", "refresh_token": "r0"})
    provider = RotatingProvider()
    now = [1_000_000.0]
    writer = WriteBack(store, "alice")  # type: ignore[arg-type]
    broker = TokenBroker(store, "alice", provider, min_valid=60,  # type: ignore[arg-type]
                         write_back=writer, clock=lambda: now[0], audience_parameter="audience")
    announced: list[str] = []

    async def listen(access: Any) -> None:
        announced.append(access.value)

    broker.on_new_token(listen)
    assert (await broker.token()).value == "a1" and announced == ["a1"]
    narrow = Narrowing(("https://dcache.example.org",), ())
    assert (await broker.token(None, narrow)).value == "a2"
    assert provider.asked[-1] == {"audience": "https://dcache.example.org"}
    assert broker.current is not None and broker.current.value == "a1" and announced == ["a1"]
    assert await writer.flush()
    assert store.writes[-1]["refresh_token"] == "r2"
    assert store.writes[-1]["access_token"] == "a1"  # the hub keeps the default token
    now[0] += 290
    assert (await broker.token()).value == "a3"  # r2: the chain went on, no invalid_grant
    assert (await broker.token(None, narrow)).value == "a4"  # both ran low: each refreshed
    assert broker.refreshes == 2 and broker.narrowed_refreshes == 2


async def test_a_failed_write_back_keeps_the_newest_refresh_token() -> None:
    """The hub refuses the PATCH for a while: the fresh access token is served, the hub's
    stale refresh token is never replayed, and the newest one lands once the hub is back."""
    store = AuthStateStore({"access_token": "a0", "refresh_token": "r0"})
    provider = RotatingProvider()
    now = [1_000_000.0]
    writer = WriteBack(store, "alice", retry=Backoff(attempts=None, base=0.05, cap=0.1))
    broker = TokenBroker(store, "alice", provider, min_valid=60,  # type: ignore[arg-type]
                         write_back=writer, clock=lambda: now[0])
    store.failing = True
    running = asyncio.create_task(writer.run())
    try:
        assert (await broker.token()).value == "a1"
        await asyncio.sleep(0.3)
        assert writer.state.pending and writer.state.failures >= 2
        assert "503" in writer.state.last_error
        # Still failing at the next refresh: the hub holds r0, which we used up. Taking it
        # as "the hub's newer tokens" would replay it (a revoked family with reuse detection).
        now[0] += 290
        assert (await broker.token()).value == "a2"
        assert provider.valid == {"r2"}  # r1 was used, not r0 again
        assert store.writes == []
        store.failing = False
        for _ in range(50):
            if not writer.state.pending:
                break
            await asyncio.sleep(0.05)
        assert [w["refresh_token"] for w in store.writes] == ["r2"]  # only the newest
        assert writer.state.failures == 0 and writer.state.pending_since is None
        now[0] += 290  # the next refresh works with what the hub now holds
        assert (await broker.token()).value == "a3"
    finally:
        running.cancel()


async def test_without_write_back_the_hub_is_never_written() -> None:
    store = AuthStateStore({"access_token": "a0", "refresh_token": "r0"})
    broker = TokenBroker(store, "alice", RotatingProvider(), min_valid=60)  # type: ignore[arg-type]
    await broker.token()
    assert store.writes == []
