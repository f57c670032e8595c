"""Bearer tokens: JWTs checked against the issuer's keys, opaque ones asked about.

JWTs are verified locally (joserfc): the signing key comes from the issuer's JWKS (found by
discovery, cached, fetched again when a token names a key id we have not seen: key rotation),
the algorithm must be on the allow-list (so ``none`` and HS256-signed-with-the-public-key
never pass), and ``iss``, ``aud``, ``exp`` and ``nbf`` are checked with a small leeway.
Opaque tokens, where allowed, are checked at the provider (RFC 7662 introspection or the
userinfo endpoint) and the answer is cached briefly, keyed by the token's hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.kubepie.gateway.token_kind import AccessTokenCheck, not_an_access_token

log = logging.getLogger(__name__)

OpaqueMode = Literal["reject", "introspection", "userinfo"]
KEY_REFETCH_INTERVAL = 30.0  # an unknown kid fetches the JWKS again at most this often
# token_type values of an introspected *bearer access token* (RFC 7662 §2.2 uses RFC 6749's
# "bearer"; glewlwyd says "bearer", some providers "access_token"). DPoP-bound tokens are not
# bearer tokens: without a proof they are refused too.
INTROSPECTED_ACCESS_TOKEN_TYPES = frozenset({"bearer", "access_token"})


class TokenRejected(Exception):
    """The token is not valid here; the message is safe to show to the client."""


class ProviderUnavailable(Exception):
    """The identity provider could not be asked (discovery, keys, introspection)."""


class ProviderMetadata:
    """OpenID Connect discovery, read once and kept (the issuer must match exactly)."""

    def __init__(self, issuer: str, http: httpx.AsyncClient) -> None:
        self.issuer = issuer.rstrip("/")
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                metadata = await _get_json(self._http, url)
                if str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
                    raise ProviderUnavailable(f"discovery at {url} names issuer "
                                              f"{metadata.get('issuer')!r}")
                self._metadata = metadata
            return self._metadata


class JwtVerifier:
    def __init__(self, metadata: ProviderMetadata, http: httpx.AsyncClient, *,
                 audiences: tuple[str, ...], algorithms: tuple[str, ...],
                 leeway: int = 30, refetch_interval: float = KEY_REFETCH_INTERVAL,
                 access_token_check: AccessTokenCheck = "auto") -> None:  # noqa: S107
        self._metadata = metadata
        self._access_token_check: AccessTokenCheck = access_token_check
        self._refetch_interval = refetch_interval
        self._http = http
        self._audiences = audiences
        self._algorithms = algorithms
        self._leeway = leeway
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        # A JWT is immutable and valid until its exp: clients send the same one with every
        # request, so its verified claims are kept until then (at most 5 min, 10k tokens).
        self._verified: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def verify(self, token: str) -> dict[str, Any]:
        """An access token's claims, or :class:`TokenRejected` saying why not.

        Besides signature, ``iss``, ``aud`` and ``exp``, the token must be an access token:
        an id token (its ``aud`` is a client id, and it travels through browsers) never is.
        """
        cached = self._verified.get(token)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        header, claims = await self._verify(token, self._audiences, None)
        problem = not_an_access_token(header, claims, self._access_token_check)
        if problem:
            raise TokenRejected(problem)
        until = min(float(claims["exp"]) + self._leeway, time.time() + 300)
        self._verified[token] = (until, claims)
        while len(self._verified) > 10_000:
            self._verified.popitem(last=False)
        return claims

    async def verify_id_token(self, token: str, *, client_id: str,
                              nonce: str) -> dict[str, Any]:
        """An id token from the token endpoint, for the browser login: ``aud`` must be our
        client id and ``nonce`` the one we sent."""
        return (await self._verify(token, (client_id,), nonce))[1]

    async def _verify(self, token: str, audiences: tuple[str, ...],
                      nonce: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError) as exc:
            raise TokenRejected(f"not a JWT: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenRejected(f"algorithm {alg!r} is not accepted")
        if "crit" in header:  # RFC 7515 §4.1.11: refuse extensions we do not implement
            raise TokenRejected("critical header extensions are not supported")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("the key id (kid) must be a string")
        keys = await self._keys_for(kid)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(self._algorithms))
        except (JoseError, ValueError, TypeError) as exc:  # joserfc lets malformed input
            # through as TypeError in places (found by tests/test_fuzz.py)
            reason = exc.description if isinstance(exc, JoseError) else str(exc)
            raise TokenRejected(f"bad signature or token: {reason or exc}") from None
        claims = dict(decoded.claims)
        self._check_claims(claims, audiences, nonce)
        return dict(header), claims

    def _check_claims(self, claims: dict[str, Any], audiences: tuple[str, ...],
                      nonce: str | None) -> None:
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self._metadata.issuer},
            "aud": {"essential": True, "values": list(audiences)},
            "exp": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        try:
            jwt.JWTClaimsRegistry(leeway=self._leeway, **options).validate(claims)
        except JoseError as exc:
            raise TokenRejected(exc.description or str(exc)) from None

    async def _keys_for(self, kid: str | None) -> KeySet:
        async with self._lock:
            now = time.monotonic()
            known = self._keys is not None and (kid is None or _has_kid(self._keys, kid))
            if not known and (self._keys is None or now - self._fetched_at >=
                              self._refetch_interval):
                uri = (await self._metadata.get()).get("jwks_uri")
                if not uri:
                    raise ProviderUnavailable("discovery has no jwks_uri")
                try:
                    self._keys = _signing_keys(await _get_json(self._http, uri))
                except (JoseError, ValueError, TypeError) as exc:
                    raise ProviderUnavailable(f"the JWKS at {uri} is unusable: {exc}") from None
                self._fetched_at = now
                log.info("signing keys fetched", extra={"kids": [k.kid for k in self._keys]})
            if self._keys is None or (kid is not None and not _has_kid(self._keys, kid)):
                raise TokenRejected(f"unknown signing key {kid!r}")
            return self._keys


class OpaqueTokenChecker:
    """Asks the provider about a token it cannot verify itself; answers cached briefly."""

    def __init__(self, mode: OpaqueMode, metadata: ProviderMetadata, http: httpx.AsyncClient,
                 *, client_id: str, client_secret: str, audiences: tuple[str, ...],
                 cache_seconds: float = 60.0, cache_size: int = 10_000) -> None:
        self.mode = mode
        self._metadata = metadata
        self._http = http
        self._client = (client_id, client_secret)
        self._audiences = audiences
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[str, tuple[float, dict[str, Any] | str]] = OrderedDict()
        self._cache_size = cache_size

    async def check(self, token: str) -> dict[str, Any]:
        if self.mode == "reject":
            raise TokenRejected("only JWT bearer tokens are accepted here")
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        cached = self._cache.get(digest)
        if cached and cached[0] > now:
            if isinstance(cached[1], str):
                raise TokenRejected(cached[1])
            return cached[1]
        try:
            claims = await (self._introspect(token) if self.mode == "introspection"
                            else self._userinfo(token))
        except TokenRejected as exc:
            self._remember(digest, now + min(5.0, self._cache_seconds), str(exc))
            raise
        expires = float(claims.get("exp", now + self._cache_seconds))
        self._remember(digest, min(now + self._cache_seconds, expires), claims)
        return claims

    def _remember(self, digest: str, until: float, value: dict[str, Any] | str) -> None:
        self._cache[digest] = (until, value)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _introspect(self, token: str) -> dict[str, Any]:
        metadata = await self._metadata.get()
        url = metadata.get("introspection_endpoint")
        if not url:
            raise ProviderUnavailable("discovery has no introspection_endpoint")
        try:
            response = await self._http.post(url, data={"token": token,
                                                        "token_type_hint": "access_token"},
                                             auth=self._client)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"introspection failed: {exc}") from None
        if response.status_code != 200:
            raise ProviderUnavailable(f"introspection answered {response.status_code}")
        claims = json_object(response)
        if claims.get("active") is not True:
            raise TokenRejected("the provider says the token is not active")
        # Providers may ignore token_type_hint and describe a refresh or id token they were
        # sent (glewlwyd answers token_type "refresh_token"/"id_token", Keycloak typ "Refresh").
        token_type = str(claims.get("token_type", "bearer")).lower()
        kind = str(claims.get("typ", "bearer")).lower()
        if token_type not in INTROSPECTED_ACCESS_TOKEN_TYPES or kind != "bearer":
            said = claims.get("token_type") if token_type not in \
                INTROSPECTED_ACCESS_TOKEN_TYPES else claims.get("typ")
            raise TokenRejected(f"the provider says this is a {said!r} token, not an access "
                                "token")
        if "exp" in claims and float(claims["exp"]) < time.time():
            raise TokenRejected("the token has expired")
        issuer = claims.get("iss")
        if issuer is not None and str(issuer).rstrip("/") != self._metadata.issuer:
            raise TokenRejected("the token is from another issuer")
        aud = claims.get("aud")
        if aud is not None and self._audiences:
            have = {aud} if isinstance(aud, str) else set(aud)
            if not have & set(self._audiences):
                raise TokenRejected("the token is not meant for this service (aud)")
        return claims

    async def _userinfo(self, token: str) -> dict[str, Any]:
        url = (await self._metadata.get()).get("userinfo_endpoint")
        if not url:
            raise ProviderUnavailable("discovery has no userinfo_endpoint")
        try:
            response = await self._http.get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"userinfo failed: {exc}") from None
        if response.status_code in (400, 401, 403):  # RFC 6750 §3.1: invalid_request/_token
            raise TokenRejected("the provider does not accept the token")
        if response.status_code != 200:
            raise ProviderUnavailable(f"userinfo answered {response.status_code}")
        return json_object(response)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def _signing_keys(jwks: Mapping[str, Any]) -> KeySet:
    """The JWKS's signature keys; encryption keys and unknown key types are left out."""
    keys: list[Any] = [dict(k) for k in jwks.get("keys", []) if isinstance(k, Mapping)
                       and k.get("use", "sig") == "sig" and k.get("kty") in ("RSA", "EC", "OKP")]
    if not keys:
        raise ValueError("it has no signature keys")
    return KeySet.import_key_set({"keys": keys})


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys)


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await http.get(url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"GET {url} failed: {exc}") from None
    return json_object(response)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or :class:`ProviderUnavailable` (the provider misbehaved)."""
    try:
        value = response.json()
    except ValueError:
        raise ProviderUnavailable(f"{response.url} did not answer JSON") from None
    if not isinstance(value, Mapping):
        raise ProviderUnavailable(f"{response.url} did not answer a JSON object")
    return dict(value)
