"""Tokens meant for one service: an audience and fewer scopes than the login's.

Storage endpoints and compute elements (dCache, XRootD, ARC) and kubepie itself may accept only
tokens whose ``aud`` names them, with narrow WLCG scopes (``storage.read:/home``); oidc-agent
users ask for them with ``oidc-token --aud=… --scope=…``. The tokenhelper gets such a token with
a refresh grant that names the audience (RFC 8707 ``resource``, or the ``audience`` parameter
INDIGO IAM and others take) and the scopes (RFC 6749 §6: never more than the login's).

Two checks keep a caller from getting more than it asked for: the scopes asked must be covered
by the login's (a WLCG storage scope may narrow the path: ``storage.read:/home/alice`` is
covered by ``storage.read:/home``), and a token the provider made broader than asked (some
ignore ``scope`` or ``resource`` on a refresh) is never handed out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from services.tokenhelper.tokens import jwt_claims

AudienceParameter = Literal["resource", "audience"]
MAX_AUDIENCES, MAX_SCOPES, MAX_LENGTH = 8, 32, 512
# Scopes that only say which identity claims userinfo returns: harmless on an access token, and
# some providers (glewlwyd) add openid to every token.
IDENTITY_SCOPES = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")  # RFC 6749 scope-token characters, no spaces


class BadNarrowing(ValueError):
    """The request itself is wrong (a 400): the message says what to change."""


class NarrowingRefused(Exception):
    """The provider would not, or did not, issue the token asked for; the message says why."""


@dataclass(frozen=True)
class Narrowing:
    """What a caller asked for beyond the default token; empty: the default token."""

    audiences: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return not self.audiences and not self.scopes

    @classmethod
    def parse(cls, audience: str | None, scope: str | None) -> Narrowing:
        """Space-separated lists, as oidc-token sends them (``--aud="a b"``)."""
        audiences = _items(audience, "audience", MAX_AUDIENCES)
        scopes = _items(scope, "scope", MAX_SCOPES)
        return cls(audiences, scopes)

    def describe(self) -> str:
        parts = []
        if self.audiences:
            parts.append("audience " + " ".join(self.audiences))
        if self.scopes:
            parts.append("scope " + " ".join(self.scopes))
        return ", ".join(parts) or "the default token"

    def refresh_parameters(self, audience_parameter: AudienceParameter) -> list[tuple[str, str]]:
        """The refresh grant's extra form fields: one ``resource`` per audience (RFC 8707
        §2), or one space-separated ``audience``."""
        fields: list[tuple[str, str]] = []
        if self.audiences:
            if audience_parameter == "resource":
                fields += [("resource", audience) for audience in self.audiences]
            else:
                fields.append(("audience", " ".join(self.audiences)))
        if self.scopes:
            fields.append(("scope", " ".join(self.scopes)))
        return fields

    def check_covered_by(self, granted: Iterable[str] | None) -> None:
        """Only ever narrower than the login's scopes."""
        if not self.scopes:
            return
        if granted is None:
            raise BadNarrowing("the login's scopes are unknown (the provider did not say), so "
                               "narrower scopes cannot be checked: ask for an audience only")
        granted = set(granted)
        extra = [scope for scope in self.scopes if not scope_covered(scope, granted)]
        if extra:
            raise BadNarrowing(f"scope {' '.join(extra)} is not among the login's scopes "
                               f"({' '.join(sorted(granted)) or 'none'}); a token can only be "
                               "narrower than the login")

    def check_issued(self, response: dict[str, Any], token: str) -> None:
        """The provider's answer must be what was asked, as far as it can be seen."""
        claims = jwt_claims(token)
        issued = _issued_scopes(response, claims)
        if self.scopes and issued is not None:
            broader = sorted(issued - set(self.scopes) - IDENTITY_SCOPES)
            if broader:
                raise NarrowingRefused(
                    f"the identity provider ignored the narrower scope and issued "
                    f"{' '.join(sorted(issued))}; not handing out a token broader than asked "
                    f"({' '.join(self.scopes)})")
        if self.audiences and claims is not None and "aud" in claims:
            audience = claims["aud"]
            issued_for = {audience} if isinstance(audience, str) else set(audience or ())
            missing = [a for a in self.audiences if a not in issued_for]
            if missing or issued_for - set(self.audiences):
                raise NarrowingRefused(
                    f"the identity provider issued a token for {' '.join(sorted(issued_for))}, "
                    f"not {' '.join(self.audiences)}: it ignores the audience parameter "
                    "(TOKENHELPER_AUDIENCE_PARAMETER: resource or audience)")


def scope_covered(wanted: str, granted: set[str]) -> bool:
    """``wanted`` is one of the login's scopes, or a WLCG storage scope on a path below one
    of them (WLCG Common JWT Profiles §3.3: access to a path includes what is under it)."""
    if wanted in granted:
        return True
    name, colon, path = wanted.partition(":")
    if not colon or not name.startswith("storage.") or not path.startswith("/"):
        return False
    if any(segment in (".", "..") for segment in path.split("/")):
        return False
    for scope in granted:
        granted_name, granted_colon, granted_path = scope.partition(":")
        if granted_colon and granted_name == name and granted_path.startswith("/"):
            base = granted_path.rstrip("/")
            if path == granted_path or path.startswith(base + "/"):
                return True
    return False


def login_scopes(auth_state: dict[str, Any], access_token: str) -> set[str] | None:
    """The scopes of the login: OAuthenticator's ``scope`` list, else the token response's,
    else the access token's own claim; None when nothing says."""
    for source in (auth_state.get("scope"),
                   (auth_state.get("token_response") or {}).get("scope")):
        scopes = _as_set(source)
        if scopes:
            return scopes
    return _issued_scopes({}, jwt_claims(access_token))


def _issued_scopes(response: dict[str, Any], claims: dict[str, Any] | None) -> set[str] | None:
    scopes = _as_set(response.get("scope"))
    if scopes:
        return scopes
    if claims is not None:
        return _as_set(claims.get("scope")) or _as_set(claims.get("scp"))
    return None


def _as_set(value: object) -> set[str] | None:
    if isinstance(value, str):
        return set(value.split()) or None
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return {item for item in value if item} or None
    return None


def _items(raw: str | None, what: str, limit: int) -> tuple[str, ...]:
    items = sorted(set((raw or "").split()))
    if len(items) > limit:
        raise BadNarrowing(f"at most {limit} values of {what}")
    for item in items:
        if len(item) > MAX_LENGTH or not _PRINTABLE.match(item):
            raise BadNarrowing(f"{what} {item[:40]!r}… is not a valid value" if len(item) > 40
                               else f"{what} {item!r} is not a valid value")
    return tuple(items)
