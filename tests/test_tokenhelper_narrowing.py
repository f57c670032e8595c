"""Tokens meant for one service: the rules (what is narrower, what was issued) and the broker
against a real provider that narrows scopes on a refresh (oidc-provider-mock, authlib's
RFC 6749 §6 grant). glewlwyd's audiences, the hub, the notebook and
oidc-token are in test_tokenhelper_audience.py."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from harness.oidc import AuthStateStore, OidcProvider, auth_state_for
from services.tokenhelper.broker import TokenBroker
from services.tokenhelper.narrowing import (
    BadNarrowing,
    Narrowing,
    NarrowingRefused,
    login_scopes,
    scope_covered,
)
from services.tokenhelper.provider import Provider


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(claims)}.c2ln"


@pytest.mark.parametrize(("wanted", "granted", "covered"), [
    ("storage.read:/home", {"storage.read:/home"}, True),
    ("storage.read:/home/alice/run1", {"storage.read:/home"}, True),   # a path below
    ("storage.read:/", {"storage.read:/"}, True),
    ("storage.read:/data", {"storage.read:/"}, True),
    ("storage.read:/homework", {"storage.read:/home"}, False),         # not below: a sibling
    ("storage.read:/home/../etc", {"storage.read:/home"}, False),      # no climbing out
    ("storage.read:/home/./x", {"storage.read:/home"}, False),
    ("storage.modify:/home/x", {"storage.read:/home"}, False),         # another permission
    ("storage.read:home", {"storage.read:/home"}, False),              # not a path
    ("compute.read", {"compute.read"}, True),
    ("compute.create", {"compute.read"}, False),
    ("email", {"openid", "profile"}, False),
])
def test_which_scopes_are_narrower_than_the_login(wanted: str, granted: set[str],
                                                  covered: bool) -> None:
    assert scope_covered(wanted, granted) is covered


def test_what_a_caller_may_ask_for() -> None:
    asked = Narrowing.parse("https://b.example  https://a.example https://a.example",
                            "storage.read:/home openid")
    assert asked.audiences == ("https://a.example", "https://b.example")  # one key per set
    assert asked.scopes == ("openid", "storage.read:/home")
    assert Narrowing.parse(None, "") == Narrowing() and Narrowing().is_default
    assert asked.refresh_parameters("resource") == [
        ("resource", "https://a.example"), ("resource", "https://b.example"),
        ("scope", "openid storage.read:/home")]
    assert asked.refresh_parameters("audience") == [
        ("audience", "https://a.example https://b.example"),
        ("scope", "openid storage.read:/home")]
    for audience, scope in (("https://x\x00", None), (None, "caf\u00e9"), ("a" * 600, None),
                            (" ".join(f"https://{n}.example" for n in range(9)), None)):
        with pytest.raises(BadNarrowing):
            Narrowing.parse(audience, scope)
    with pytest.raises(BadNarrowing, match="not among the login's scopes"):
        Narrowing(scopes=("storage.modify:/home",)).check_covered_by({"storage.read:/home"})
    with pytest.raises(BadNarrowing, match="unknown"):
        Narrowing(scopes=("openid",)).check_covered_by(None)
    Narrowing(audiences=("https://a.example",)).check_covered_by(None)  # audiences: the IdP's


def test_a_token_broader_than_asked_is_never_handed_out() -> None:
    narrow = Narrowing(("https://dcache.example",), ("storage.read:/home",))
    good = jwt({"aud": "https://dcache.example", "scope": "openid storage.read:/home"})
    narrow.check_issued({"access_token": good}, good)  # openid on top is harmless
    broader = jwt({"aud": "https://dcache.example",
                   "scope": "storage.read:/home storage.modify:/home"})
    with pytest.raises(NarrowingRefused, match="ignored the narrower scope"):
        narrow.check_issued({}, broader)
    with pytest.raises(NarrowingRefused, match="ignored the narrower scope"):
        narrow.check_issued({"scope": "storage.read:/ storage.read:/home"}, good)
    for aud in ("https://other.example", ["https://dcache.example", "https://other.example"]):
        wrong = jwt({"aud": aud, "scope": "storage.read:/home"})
        with pytest.raises(NarrowingRefused, match="issued a token for"):
            narrow.check_issued({}, wrong)
    narrow.check_issued({}, "an-opaque-token")  # nothing to see: the provider's word


def test_the_logins_scopes_come_from_auth_state_or_the_token() -> None:
    assert login_scopes({"scope": ["openid", "profile"]}, "x") == {"openid", "profile"}
    assert login_scopes({"scope": [""], "token_response": {"scope": "openid email"}}, "x") == \
        {"openid", "email"}
    assert login_scopes({}, jwt({"scp": ["storage.read:/"]})) == {"storage.read:/"}
    assert login_scopes({}, "opaque") is None


def _broker(provider: OidcProvider, store: AuthStateStore) -> TokenBroker:
    client = Provider(provider.issuer, "jupyterhub", "secret")
    return TokenBroker(store, "alice", client, min_valid=60)  # type: ignore[arg-type]


def _userinfo(provider: OidcProvider, token: str) -> dict[str, Any]:
    answer = httpx.get(f"{provider.issuer}/userinfo", headers={
        "Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_narrower_scope_from_a_real_provider_and_single_flight(
        provider: OidcProvider) -> None:
    store = AuthStateStore(auth_state_for(provider, "alice"))  # logged in: openid profile
    broker = _broker(provider, store)
    default = await broker.token()
    assert _userinfo(provider, default.value)["preferred_username"] == "alice"
    assert broker._tokens is not None

    narrow = Narrowing(scopes=("openid",))
    tokens = await asyncio.gather(*(broker.token(None, narrow) for _ in range(50)))
    assert len({t.value for t in tokens}) == 1 and broker.narrowed_refreshes == 1
    assert tokens[0].value != default.value
    assert "preferred_username" not in _userinfo(provider, tokens[0].value)  # profile: gone
    assert (await broker.token(None, narrow)).value == tokens[0].value  # cached

    # The default token (and the WLCG file) stays, and still refreshes with all its scopes.
    assert broker.current == default
    assert broker._tokens is not None
    broker._tokens = broker._tokens.__class__(
        broker._tokens.access.__class__(default.value, 0.0, 1.0),  # force a default refresh
        broker._tokens.refresh_token, broker._tokens.auth_state)
    renewed = await broker.token()
    assert renewed.value != default.value
    assert _userinfo(provider, renewed.value)["preferred_username"] == "alice"  # full scope

    with pytest.raises(BadNarrowing, match="email is not among"):
        await broker.token(None, Narrowing(scopes=("email",)))  # never asked of the provider
    assert broker.narrowed_refreshes == 1
