"""Signed cookies: the browser session and the short-lived state of a login in progress.

Both are JWTs signed with the gateway's session secret (HS256), so any replica can read
them and nobody can forge or alter them; they hold no tokens from the provider. The session
cookie is HttpOnly, SameSite=Lax, and Secure with the ``__Host-`` prefix whenever the public
URL is https (plain http is allowed only for loopback, i.e. the demo).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from services.identity.claims import Identity, IdentityRefused

ALGORITHM = "HS256"


class Sessions:
    def __init__(self, secret: str, *, secure: bool, lifetime: float) -> None:
        self._key = OctKey.import_key(hashlib.sha256(b"kubepie-session:" +
                                                     secret.encode()).digest())
        self._csrf_key = hashlib.sha256(b"kubepie-csrf:" + secret.encode()).digest()
        self.secure = secure
        self.lifetime = lifetime
        prefix = "__Host-" if secure else ""
        self.session_cookie = f"{prefix}kubepie-session"
        self.login_cookie = f"{prefix}kubepie-login"

    def _sign(self, claims: dict[str, Any], lifetime: float) -> str:
        now = int(time.time())
        return jwt.encode({"alg": ALGORITHM}, {**claims, "iat": now,
                                               "exp": now + int(lifetime)}, self._key)

    def _read(self, value: str | None, purpose: str) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            decoded = jwt.decode(value, self._key, algorithms=[ALGORITHM])
            jwt.JWTClaimsRegistry(exp={"essential": True},
                                  purpose={"essential": True, "value": purpose}
                                  ).validate(decoded.claims)
        except JoseError:
            return None
        return dict(decoded.claims)

    def _set(self, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                            secure=self.secure, samesite="Lax")

    # -- the session -----------------------------------------------------------------------

    def start(self, response: web.StreamResponse, identity: Identity) -> None:
        value = self._sign({"purpose": "session", "sid": secrets.token_urlsafe(16),
                            **identity.as_claims()}, self.lifetime)
        self._set(response, self.session_cookie, value, int(self.lifetime))

    def identity(self, request: web.Request) -> tuple[Identity, str] | None:
        """The session's identity and id, or None without a valid session."""
        session = self.read(request)
        return None if session is None else session[:2]

    def read(self, request: web.Request) -> tuple[Identity, str, float] | None:
        """The session's identity, id and end (epoch seconds), or None without one."""
        claims = self._read(request.cookies.get(self.session_cookie), "session")
        if claims is None:
            return None
        try:
            return Identity.from_claims(claims), str(claims["sid"]), float(claims["exp"])
        except (IdentityRefused, KeyError):
            return None

    def end(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.session_cookie, path="/")

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), "sha256").hexdigest()

    def csrf_ok(self, session_id: str, token: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session_id), token)

    # -- a login in progress ---------------------------------------------------------------

    def remember_login(self, response: web.StreamResponse, state: str, nonce: str,
                       verifier: str, next_path: str) -> None:
        value = self._sign({"purpose": "login", "state": state, "nonce": nonce,
                            "verifier": verifier, "next": next_path}, 600)
        self._set(response, self.login_cookie, value, 600)

    def login_in_progress(self, request: web.Request) -> dict[str, Any] | None:
        return self._read(request.cookies.get(self.login_cookie), "login")

    def forget_login(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.login_cookie, path="/")
