"""Who is asking: a bearer token, an access key (HTTP Basic) or a browser session, in that
order of the Authorization header first. Nothing else identifies a request."""

from __future__ import annotations

import binascii
import logging
from dataclasses import dataclass
from typing import Literal

from aiohttp import BasicAuth, web

from services.identity.claims import ClaimMapping, Identity, IdentityRefused
from services.kubepie.gateway.accesskeys import AccessKeys, CredentialsRejected
from services.kubepie.gateway.bearer import (
    JwtVerifier,
    OpaqueTokenChecker,
    ProviderUnavailable,
    TokenRejected,
    looks_like_jwt,
)
from services.kubepie.gateway.sessions import Sessions

log = logging.getLogger(__name__)
Via = Literal["bearer", "access-key", "session"]
REALM = "kubepie"


class NotAuthenticated(Exception):
    """No usable credentials (401); ``error`` is the RFC 6750 error code when a token failed."""

    def __init__(self, reason: str, error: str | None = None) -> None:
        super().__init__(reason)
        self.error = error


class Refused(Exception):
    """Authenticated, but the identity cannot be used (403)."""


class Unavailable(Exception):
    """The provider could not be asked (503)."""


@dataclass(frozen=True)
class Caller:
    """Who is asking, with what, and until when the credential holds (None: not known)."""

    identity: Identity
    via: Via
    until: float | None


class Authenticator:
    def __init__(self, *, jwts: JwtVerifier, opaque: OpaqueTokenChecker,
                 mapping: ClaimMapping, keys: AccessKeys, sessions: Sessions) -> None:
        self._jwts = jwts
        self._opaque = opaque
        self._mapping = mapping
        self._keys = keys
        self._sessions = sessions

    async def identify(self, request: web.Request) -> tuple[Identity, Via]:
        caller = await self.caller(request)
        return caller.identity, caller.via

    async def caller(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if header and scheme.lower() == "bearer":
            return await self._bearer(credentials.strip())
        if header and scheme.lower() == "basic":
            return await self._basic(header)
        if header:
            raise NotAuthenticated(f"unsupported authorization scheme {scheme!r}")
        session = self._sessions.read(request)
        if session is not None:
            return Caller(session[0], "session", session[2])
        raise NotAuthenticated("credentials are required")

    async def _bearer(self, token: str) -> Caller:
        try:
            claims = await (self._jwts.verify(token) if looks_like_jwt(token)
                            else self._opaque.check(token))
        except TokenRejected as exc:
            raise NotAuthenticated(str(exc), "invalid_token") from None
        except ProviderUnavailable as exc:
            log.error("identity provider unavailable", extra={"reason": str(exc)})
            raise Unavailable("the identity provider cannot be reached") from None
        try:
            identity = self._mapping.identity(claims)
        except IdentityRefused as exc:
            raise Refused(str(exc)) from None
        return Caller(identity, "bearer", float(claims["exp"]) if "exp" in claims else None)

    async def _basic(self, header: str) -> Caller:
        try:
            credentials = BasicAuth.decode(header, encoding="utf-8")
        except (ValueError, binascii.Error):
            raise NotAuthenticated("malformed Basic credentials") from None
        try:
            key = await self._keys.verify(credentials.login, credentials.password)
        except CredentialsRejected as exc:
            raise NotAuthenticated(str(exc)) from None
        return Caller(key.identity, "access-key", key.expires)


def challenges(error: str | None = None, description: str | None = None) -> list[str]:
    """WWW-Authenticate values: Basic first (neon, davfs2 and Windows send credentials only
    after it, and some read only the first challenge), then Bearer (RFC 6750, with the error
    when a token was refused); clients with a token send it up front anyway."""
    bearer = f'Bearer realm="{REALM}"'
    if error:
        reason = (description or "").replace('"', "'").replace("\\", "/")
        bearer += f', error="{error}", error_description="{reason}"'
    return [f'Basic realm="{REALM}", charset="UTF-8"', bearer]
