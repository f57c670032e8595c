"""Bearer JWT checks of the gateway, each tried with a token built to break it.

The verifier talks HTTP to a small issuer serving discovery and a JWKS (keys we hold, so we
can sign exactly the token each rule is about); the end-to-end tests with the real provider
are in test_gateway_oidc.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from harness.gateway import b64, unb64
from harness.issuer import Issuer
from services.kubepie.gateway.bearer import (
    JwtVerifier,
    OpaqueTokenChecker,
    ProviderMetadata,
    ProviderUnavailable,
    TokenRejected,
)


@pytest.fixture
async def verifier(issuer: Issuer) -> AsyncIterator[JwtVerifier]:
    async with httpx.AsyncClient() as http:
        yield JwtVerifier(ProviderMetadata(issuer.url, http), http, audiences=("kubepie",),
                          algorithms=("RS256", "ES256"), leeway=5, refetch_interval=0.3)


async def test_a_valid_token_gives_its_claims(issuer: Issuer, verifier: JwtVerifier) -> None:
    claims = await verifier.verify(issuer.token(uidNumber=1001))
    assert claims["sub"] == "alice" and claims["uidNumber"] == 1001


@pytest.mark.parametrize(("claims", "reason"), [
    ({"iss": "https://evil.example"}, "iss"),
    ({"aud": "another-service"}, "aud"),
    ({"aud": None}, "aud"),
    ({"exp": int(time.time()) - 60}, "expired"),
    ({"exp": None}, "exp"),
    ({"nbf": int(time.time()) + 600}, "not yet valid"),
])
async def test_claims_are_checked(issuer: Issuer, verifier: JwtVerifier,
                                  claims: dict[str, Any], reason: str) -> None:
    if "exp" in claims and claims["exp"] is not None:
        claims["exp"] = int(time.time()) - 60  # computed now, not at import
    with pytest.raises(TokenRejected, match=rf"(?i){reason}"):
        await verifier.verify(issuer.token(**claims))


async def test_alg_none_is_rejected(issuer: Issuer, verifier: JwtVerifier) -> None:
    payload = unb64(issuer.token().split(".")[1])
    forged = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(payload)}."
    with pytest.raises(TokenRejected, match="algorithm 'none'"):
        await verifier.verify(forged)


async def test_hs256_signed_with_the_public_key_is_rejected(issuer: Issuer,
                                                             verifier: JwtVerifier) -> None:
    """The classic confusion: the RSA public key (known to all) used as an HMAC secret."""
    public_pem = issuer.keys[0].as_pem(private=False)
    header = b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    payload = issuer.token().split(".")[1]
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenRejected, match="algorithm 'HS256'"):
        await verifier.verify(f"{header}.{payload}.{b64(signature)}")


async def test_a_symmetric_key_in_the_jwks_is_never_used(issuer: Issuer,
                                                         verifier: JwtVerifier) -> None:
    header = b64(json.dumps({"alg": "RS256", "kid": "sym"}).encode())
    payload = issuer.token().split(".")[1]
    signature = hmac.new(b"shared-secret", f"{header}.{payload}".encode(),
                         hashlib.sha256).digest()
    with pytest.raises(TokenRejected):
        await verifier.verify(f"{header}.{payload}.{b64(signature)}")


async def test_a_tampered_payload_is_rejected(issuer: Issuer, verifier: JwtVerifier) -> None:
    header, payload, signature = issuer.token().split(".")
    claims = json.loads(unb64(payload))
    claims["preferred_username"] = "bob"
    with pytest.raises(TokenRejected, match=r"(?i)signature"):
        await verifier.verify(f"{header}.{b64(json.dumps(claims).encode())}.{signature}")


async def test_a_token_from_a_key_the_issuer_never_published(issuer: Issuer,
                                                             verifier: JwtVerifier) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, other key
    with pytest.raises(TokenRejected, match=r"(?i)signature"):
        await verifier.verify(issuer.token(key=stranger))


async def test_key_rotation_refetches_once_for_an_unknown_kid(issuer: Issuer,
                                                              verifier: JwtVerifier) -> None:
    await verifier.verify(issuer.token())
    assert issuer.jwks_fetches == 1
    await asyncio.sleep(0.4)
    rotated = ECKey.generate_key("P-256", parameters={"kid": "k2", "use": "sig"})
    issuer.keys.append(rotated)
    claims = await verifier.verify(issuer.token(key=rotated, header={"alg": "ES256",
                                                                     "kid": "k2"}))
    assert claims["sub"] == "alice" and issuer.jwks_fetches == 2
    # A flood of unknown kids does not turn into a flood of JWKS fetches.
    for n in range(5):
        with pytest.raises(TokenRejected, match="unknown signing key"):
            await verifier.verify(issuer.token(header={"alg": "RS256", "kid": f"x{n}"}))
    assert issuer.jwks_fetches == 2


async def test_garbage_is_not_a_jwt(verifier: JwtVerifier) -> None:
    for value in ("eyJ.eyJ.x", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", ""):
        with pytest.raises(TokenRejected):
            await verifier.verify(value)


# Tokens as real providers issue them (documented shapes, trimmed to what the check reads;
# docs/kubepie.md lists the sources). The header's typ and the claims decide.
ACCESS_TOKENS = {
    "glewlwyd 2.7 access token": ({"typ": "at+jwt"}, {"client_id": "hub", "scope": "openid",
                                                       "type": "access_token"}),
    "Keycloak 24 access token (with nonce)": ({"typ": "JWT"}, {
        "typ": "Bearer", "azp": "hub", "scope": "openid profile", "nonce": "n",
        "session_state": "s"}),
    "Keycloak 26 access token": ({"typ": "JWT"}, {"typ": "Bearer", "azp": "hub",
                                                 "scope": "openid", "sid": "s"}),
    "Entra ID v2 access token": ({"typ": "JWT"}, {"scp": "Files.Read", "azp": "hub",
                                                 "ver": "2.0", "tid": "t", "oid": "o"}),
    "Okta access token": ({"typ": "JWT"}, {"cid": "hub", "scp": ["openid"], "ver": 1}),
    "Auth0 access token": ({"typ": "at+jwt"}, {"azp": "hub", "scope": "openid"}),
}
ID_TOKENS = {
    "glewlwyd 2.7 id token": ({"typ": "JWT"}, {"azp": "hub", "nonce": "n", "at_hash": "h",
                                               "amr": ["session"], "auth_time": 0}),
    "Keycloak id token": ({"typ": "JWT"}, {"typ": "ID", "azp": "hub", "at_hash": "h",
                                           "sid": "s"}),
    "Keycloak id token without at_hash": ({"typ": "JWT"}, {"typ": "ID", "azp": "hub"}),
    "Entra ID v2 id token (no nonce)": ({"typ": "JWT"}, {"ver": "2.0", "tid": "t",
                                                         "oid": "o", "aio": "a"}),
    "Google id token": ({"alg": "RS256"}, {"azp": "hub", "email": "a@b", "at_hash": "h"}),
    "Okta id token": ({"typ": "JWT"}, {"amr": ["pwd"], "idp": "i", "ver": 1, "nonce": "n"}),
    "oidc-provider-mock id token": ({}, {"nonce": "n", "at_hash": "h", "auth_time": 1}),
    "Keycloak refresh token": ({"typ": "JWT"}, {"typ": "Refresh", "azp": "hub",
                                                "scope": "openid"}),
    "a logout token": ({"typ": "logout+jwt"}, {"events": {}, "sid": "s"}),
    "a DPoP proof": ({"typ": "dpop+jwt"}, {"htm": "GET", "htu": "https://x", "jti": "j"}),
}


def _shaped(issuer: Issuer, shape: tuple[dict[str, Any], dict[str, Any]]) -> str:
    header, extra = shape
    claims: dict[str, Any] = {"client_id": None, "scope": None, **extra}
    return issuer.token(header={"alg": "RS256", "kid": "k1", **header}, **claims)


@pytest.mark.parametrize("name", sorted(ACCESS_TOKENS))
async def test_access_tokens_of_real_providers_are_accepted(issuer: Issuer,
                                                            verifier: JwtVerifier,
                                                            name: str) -> None:
    claims = await verifier.verify(_shaped(issuer, ACCESS_TOKENS[name]))
    assert claims["sub"] == "alice"


@pytest.mark.parametrize("name", sorted(ID_TOKENS))
async def test_an_id_token_never_passes_as_an_access_token(issuer: Issuer,
                                                           verifier: JwtVerifier,
                                                           name: str) -> None:
    """Signed by the right key, for the right audience, not expired: still refused."""
    with pytest.raises(TokenRejected, match=r"not an access token|no sign of an access"):
        await verifier.verify(_shaped(issuer, ID_TOKENS[name]))


async def test_the_access_token_check_modes(issuer: Issuer) -> None:
    keycloak_access = _shaped(issuer, ACCESS_TOKENS["Keycloak 26 access token"])
    rfc9068 = _shaped(issuer, ACCESS_TOKENS["glewlwyd 2.7 access token"])
    dex_style = _shaped(issuer, ({"typ": "JWT"}, {"email": "a@b"}))  # an id token in all
    async with httpx.AsyncClient() as http:  # but name
        def verifier(check: Any) -> JwtVerifier:
            return JwtVerifier(ProviderMetadata(issuer.url, http), http, audiences=("kubepie",),
                               algorithms=("RS256",), access_token_check=check)
        strict = verifier("rfc9068")
        assert (await strict.verify(rfc9068))["sub"] == "alice"
        with pytest.raises(TokenRejected, match="not an RFC 9068 access token"):
            await strict.verify(keycloak_access)
        with pytest.raises(TokenRejected, match="no sign of an access token"):
            await verifier("auto").verify(dex_style)
        assert (await verifier("off").verify(dex_style))["sub"] == "alice"


async def test_introspection_answers_about_other_token_kinds_are_refused(
        issuer: Issuer) -> None:
    """A provider that ignores token_type_hint describes whatever it was sent."""
    now = int(time.time())
    base = {"active": True, "iss": issuer.url, "aud": "kubepie", "exp": now + 60,
            "preferred_username": "alice"}
    issuer.opaque = {
        "glewlwyd-refresh": {**base, "token_type": "refresh_token"},
        "glewlwyd-id": {**base, "token_type": "id_token"},
        "keycloak-refresh": {**base, "token_type": "Refresh", "typ": "Refresh"},
        "keycloak-offline": {**base, "typ": "Offline"},
        "dpop-bound": {**base, "token_type": "DPoP"},
        "glewlwyd-access": {**base, "token_type": "bearer"},
        "keycloak-access": {**base, "token_type": "Bearer", "typ": "Bearer"},
        "no-type-said": dict(base),
    }
    async with httpx.AsyncClient() as http:
        checker = OpaqueTokenChecker("introspection", ProviderMetadata(issuer.url, http), http,
                                     client_id="kubepie", client_secret="s",
                                     audiences=("kubepie",))
        for token in ("glewlwyd-refresh", "glewlwyd-id", "keycloak-refresh",
                      "keycloak-offline", "dpop-bound"):
            with pytest.raises(TokenRejected, match="not an access token"):
                await checker.check(token)
        for token in ("glewlwyd-access", "keycloak-access", "no-type-said"):
            assert (await checker.check(token))["preferred_username"] == "alice"


async def test_opaque_tokens_are_refused_unless_configured(issuer: Issuer) -> None:
    async with httpx.AsyncClient() as http:
        checker = OpaqueTokenChecker("reject", ProviderMetadata(issuer.url, http), http,
                                     client_id="kubepie", client_secret="s",
                                     audiences=("kubepie",))
        with pytest.raises(TokenRejected, match="only JWT"):
            await checker.check("gppfnjW9BivRVhLwKupIbOSHwOOA5H2Oko5kPoh4")


async def test_opaque_tokens_by_introspection_with_a_short_cache(issuer: Issuer) -> None:
    now = int(time.time())
    issuer.opaque = {
        "good": {"active": True, "iss": issuer.url, "aud": "kubepie", "exp": now + 60,
                 "preferred_username": "alice"},
        "other-audience": {"active": True, "iss": issuer.url, "aud": "else", "exp": now + 60},
        "other-issuer": {"active": True, "iss": "https://evil.example", "exp": now + 60},
        "expired": {"active": True, "iss": issuer.url, "exp": now - 5},
    }
    async with httpx.AsyncClient() as http:
        checker = OpaqueTokenChecker("introspection", ProviderMetadata(issuer.url, http), http,
                                     client_id="kubepie", client_secret="s",
                                     audiences=("kubepie",), cache_seconds=0.5)
        assert (await checker.check("good"))["preferred_username"] == "alice"
        assert (await checker.check("good"))["preferred_username"] == "alice"
        assert issuer.introspections == 1  # the second answer came from the cache
        for token, reason in (("other-audience", "aud"), ("other-issuer", "issuer"),
                              ("expired", "expired"), ("unknown", "not active")):
            with pytest.raises(TokenRejected, match=reason):
                await checker.check(token)
        issuer.opaque["good"]["active"] = False  # revoked at the provider
        await asyncio.sleep(0.6)
        with pytest.raises(TokenRejected, match="not active"):
            await checker.check("good")
        wrong_client = OpaqueTokenChecker("introspection", ProviderMetadata(issuer.url, http),
                                          http, client_id="kubepie", client_secret="wrong",
                                          audiences=("kubepie",))
        with pytest.raises(ProviderUnavailable, match="401"):
            await wrong_client.check("good")


def test_session_cookies_are_secure_with_the_host_prefix_on_https() -> None:
    from aiohttp import web as aioweb

    from services.identity.claims import Identity
    from services.kubepie.gateway.sessions import Sessions

    sessions = Sessions("s" * 32, secure=True, lifetime=3600)
    response = aioweb.Response()
    sessions.start(response, Identity("alice", 1001, 1001))
    cookie = response.cookies.output()
    assert cookie.startswith("Set-Cookie: __Host-kubepie-session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=3600"):
        assert attribute in cookie, attribute
    assert "Domain" not in cookie
