"""Who a server's user is on disk, from the claims of their login (auth_state).

OAuthenticator keeps the provider's answers in auth_state: the id token (``id_token``) and the
userinfo response (``oauth_user``, GenericOAuthenticator's ``user_auth_state_key``). Their
claims go through the same mapping kubepie uses (services/identity), so the notebook runs with
the uid, gid and groups the user's file server runs with. The id token came straight from the
token endpoint over TLS to the hub, which stored it: its claims are read without verifying the
signature again (OpenID Connect Core §3.1.3.7 allows that for a token received that way).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from services.identity.claims import ClaimMapping, Identity, IdentityRefused

USERINFO_KEYS = ("oauth_user", "user")  # GenericOAuthenticator's default, and older layouts


class NoIdentity(Exception):
    """The spawn must not go on; the message is for the user's spawn page."""


def claims_from_auth_state(auth_state: Mapping[str, Any] | None) -> dict[str, Any]:
    """userinfo's claims, overridden by the id token's (the gateway's login merges the same
    way: the id token wins where both say something)."""
    if not auth_state:
        raise NoIdentity("your login carries no claims (auth_state is empty): log out and log "
                         "in again; if this persists, the hub needs enable_auth_state")
    claims: dict[str, Any] = {}
    for key in USERINFO_KEYS:
        value = auth_state.get(key)
        if isinstance(value, Mapping):
            claims.update(value)
            break
    token = auth_state.get("id_token")
    if isinstance(token, str) and token.count(".") == 2:
        claims.update(_payload(token))
    if not claims:
        raise NoIdentity("your login carries no claims (no id token, no userinfo in "
                         "auth_state): log out and log in again")
    return claims


def identity_of(auth_state: Mapping[str, Any] | None, mapping: ClaimMapping) -> Identity:
    """The identity the claims map to, or :class:`NoIdentity` saying why not."""
    claims = claims_from_auth_state(auth_state)
    try:
        return mapping.identity(claims)
    except IdentityRefused as exc:
        raise NoIdentity(f"your account cannot start a server here: {exc}. Ask your "
                         "facility's support to check your account (uid/gid/groups)") from None


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return dict(value) if isinstance(value, Mapping) else {}
