"""Tokens as OAuthenticator stores them in auth_state, and what a refresh returns."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float | None  # Unix time; None when the provider did not say
    lifetime: float | None = None  # seconds it was issued for, when known

    def remaining(self, now: float) -> float | None:
        return None if self.expires_at is None else self.expires_at - now


@dataclass(frozen=True)
class TokenSet:
    access: AccessToken
    refresh_token: str | None = field(repr=False)
    auth_state: dict[str, Any] = field(repr=False, default_factory=dict)


def from_auth_state(auth_state: dict[str, Any]) -> TokenSet:
    """OAuthenticator's layout: access_token, refresh_token, id_token, token_response, ...

    auth_state does not record when the token was issued, so ``expires_in`` there cannot be
    trusted; a JWT access token's ``exp`` can. An opaque token's expiry is unknown (None),
    which makes the broker refresh it once to learn it.
    """
    token = auth_state.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("auth_state has no access_token (is enable_auth_state on?)")
    exp = jwt_expiry(token)
    return TokenSet(AccessToken(token, exp), auth_state.get("refresh_token") or None,
                    dict(auth_state))


def issued_access_token(response: dict[str, Any], now: float) -> AccessToken:
    """The access token of a token response, with its expiry (``expires_in``, else ``exp``)."""
    token = str(response["access_token"])
    expires_in = response.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float | str) \
        and str(expires_in).replace(".", "", 1).isdigit() else None
    expires_at = now + lifetime if lifetime else jwt_expiry(token)
    if lifetime is None and expires_at is not None:
        lifetime = expires_at - now
    return AccessToken(token, expires_at, lifetime)


def after_refresh(previous: TokenSet, response: dict[str, Any], now: float) -> TokenSet:
    """The token set after a refresh; providers that do not rotate omit refresh_token."""
    access = issued_access_token(response, now)
    refresh_token = response.get("refresh_token") or previous.refresh_token
    auth_state = {**previous.auth_state, "access_token": access.value,
                  "refresh_token": refresh_token,
                  "token_response": {k: v for k, v in response.items()}}
    if response.get("id_token"):
        auth_state["id_token"] = response["id_token"]
    return TokenSet(access, refresh_token, auth_state)


def after_narrowed_refresh(previous: TokenSet, response: dict[str, Any]) -> TokenSet:
    """The default token set after a refresh for a narrower token: the default access token
    stays, a rotated refresh token replaces the spent one."""
    refresh_token = response.get("refresh_token") or previous.refresh_token
    if refresh_token == previous.refresh_token:
        return previous
    return TokenSet(previous.access, refresh_token,
                    {**previous.auth_state, "refresh_token": refresh_token})


def jwt_expiry(token: str) -> float | None:
    """``exp`` of a JWT, read without verifying it: used for timing only, never for trust."""
    claims = jwt_claims(token)
    exp = claims.get("exp") if claims is not None else None
    return float(exp) if isinstance(exp, int | float) else None


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, read without verifying it (the provider just sent it to us over
    TLS): used to time refreshes and to see what was issued, never to trust anyone."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None
