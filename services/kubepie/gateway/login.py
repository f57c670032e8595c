"""Browser login: the OIDC authorization-code flow with PKCE, state and nonce.

The id token is verified like any JWT (keys, iss, aud = our client id, exp) plus its nonce;
claims missing from it are taken from the userinfo endpoint (some providers put uidNumber or
groups only there), whose ``sub`` must match. The result is a session cookie, nothing else:
the provider's tokens are dropped once the identity is known.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from services.identity.claims import ClaimMapping, IdentityRefused
from services.kubepie.gateway.bearer import (
    JwtVerifier,
    ProviderMetadata,
    ProviderUnavailable,
    TokenRejected,
    json_object,
)
from services.kubepie.gateway.pages import error_page
from services.kubepie.gateway.sessions import Sessions

log = logging.getLogger(__name__)
PREFIX = "/_kubepie"


class BrowserLogin:
    def __init__(self, *, metadata: ProviderMetadata, verifier: JwtVerifier,
                 http: httpx.AsyncClient, sessions: Sessions, mapping: ClaimMapping,
                 client_id: str, client_secret: str, public_url: str, scopes: str) -> None:
        self._metadata = metadata
        self._verifier = verifier
        self._http = http
        self._sessions = sessions
        self._mapping = mapping
        self._client = (client_id, client_secret)
        self.redirect_uri = f"{public_url.rstrip('/')}{PREFIX}/callback"
        self._scopes = scopes

    def routes(self) -> list[web.RouteDef]:
        return [web.get(f"{PREFIX}/login", self.login),
                web.get(f"{PREFIX}/callback", self.callback),
                web.post(f"{PREFIX}/logout", self.logout)]

    async def login(self, request: web.Request) -> web.StreamResponse:
        endpoint = (await self._metadata.get())["authorization_endpoint"]
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        query = urlencode({
            "response_type": "code", "client_id": self._client[0],
            "redirect_uri": self.redirect_uri, "scope": self._scopes, "state": state,
            "nonce": nonce, "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256"})
        response = web.HTTPFound(f"{endpoint}?{query}")
        self._sessions.remember_login(response, state, nonce, verifier,
                                      safe_next(request.query.get("next", "/")))
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        pending = self._sessions.login_in_progress(request)
        if pending is None or not secrets.compare_digest(
                str(pending["state"]), request.query.get("state", "")):
            return error_page(400, "This login link is stale or was not started here; "
                                   "start again from the page you wanted.")
        if "error" in request.query or "code" not in request.query:
            return error_page(403, f"The identity provider refused the login: "
                                   f"{request.query.get('error', 'no code')}")
        try:
            claims = await self._claims(request.query["code"], pending)
            identity = self._mapping.identity(claims)
        except (TokenRejected, IdentityRefused) as exc:
            log.warning("browser login refused", extra={"reason": str(exc)})
            return error_page(403, f"You cannot use this service: {exc}")
        except ProviderUnavailable as exc:
            return error_page(503, f"The identity provider could not be reached: {exc}")
        response = web.HTTPFound(str(pending["next"]))
        self._sessions.forget_login(response)
        self._sessions.start(response, identity)
        log.info("browser login", extra={"user": identity.username})
        return response

    async def _claims(self, code: str, pending: dict[str, Any]) -> dict[str, Any]:
        metadata = await self._metadata.get()
        try:
            answer = await self._http.post(metadata["token_endpoint"], auth=self._client, data={
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": pending["verifier"]})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"token endpoint: {exc}") from None
        if answer.status_code != 200:
            raise TokenRejected(f"the token endpoint answered {answer.status_code}")
        tokens = json_object(answer)
        if "id_token" not in tokens:
            raise TokenRejected("the provider sent no id token (is the openid scope allowed?)")
        claims = await self._verifier.verify_id_token(tokens["id_token"],
                                                      client_id=self._client[0],
                                                      nonce=str(pending["nonce"]))
        userinfo_url = metadata.get("userinfo_endpoint")
        if userinfo_url and tokens.get("access_token"):
            try:
                info = await self._http.get(userinfo_url, headers={
                    "Authorization": f"Bearer {tokens['access_token']}"})
            except httpx.HTTPError as exc:
                raise ProviderUnavailable(f"userinfo: {exc}") from None
            if info.status_code == 200:
                extra = json_object(info)
                if extra.get("sub") == claims.get("sub"):
                    claims = {**extra, **claims}
        return claims

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther(f"{PREFIX}/keys")
        self._sessions.end(response)
        return response


def safe_next(path: str) -> str:
    """Only a path on this gateway: no scheme, no host, no ``//evil`` (an open redirect)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
