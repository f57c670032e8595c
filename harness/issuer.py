"""A small OIDC issuer on loopback over real HTTP: discovery, a JWKS with keys the caller
holds (and can rotate), RFC 7662 introspection of opaque tokens it was told about, and RFC 9068
access tokens signed with those keys, so each rule of a verifier can be tried with the token
built to break it."""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from harness.gateway import b64


class Issuer:
    """Discovery + JWKS over real HTTP, with keys the test can rotate."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})]
        self.jwks_fetches = 0
        self.introspections = 0
        self.opaque: dict[str, dict[str, Any]] = {}
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/introspect", self._introspect)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                                  "userinfo_endpoint": f"{self.url}/userinfo",
                                  "introspection_endpoint": f"{self.url}/introspect"})

    async def _introspect(self, request: web.Request) -> web.Response:
        """RFC 7662: client authentication, form-encoded token, {"active": false} if unknown."""
        self.introspections += 1
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(
                b"kubepie:s").decode():
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        return web.json_response(self.opaque.get(str(form.get("token")), {"active": False}))

    async def _jwks(self, _: web.Request) -> web.Response:
        self.jwks_fetches += 1
        encryption = ECKey.generate_key("P-256", parameters={"kid": "enc", "use": "enc"})
        keys = [k.as_dict(private=False) for k in self.keys]
        keys.append(encryption.as_dict(private=False))
        keys.append({"kty": "oct", "kid": "sym", "k": b64(b"shared-secret")})
        return web.json_response({"keys": keys})

    def token(self, key: Any = None, header: dict[str, Any] | None = None,
              **claims: Any) -> str:
        """An RFC 9068 access token unless ``header``/``claims`` say otherwise."""
        now = int(time.time())
        body = {"iss": self.url, "aud": "kubepie", "sub": "alice", "iat": now,
                "exp": now + 300, "client_id": "some-client", "scope": "openid",
                "preferred_username": "alice", **claims}
        body = {k: v for k, v in body.items() if v is not None}
        key = key or self.keys[0]
        return jwt.encode(header or {"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}, body,
                          key)
