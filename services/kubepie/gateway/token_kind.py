"""Is this JWT an access token? An id token must never open a user's files.

Providers tell the two kinds apart in different ways, so the check looks for evidence both
ways (shapes seen in Keycloak, glewlwyd, Entra ID, Okta, Auth0, Google; docs/kubepie.md):

- refused, whatever else the token says: a ``typ`` header other than ``JWT``/``at+jwt``
  (``dpop+jwt``, ``logout+jwt``, …); a Keycloak ``typ`` claim other than ``Bearer`` (``ID``,
  ``Refresh``, ``Offline``); the id-token-only hashes ``at_hash``, ``c_hash``, ``s_hash``;
  a ``nonce`` (Keycloak before 25 also put it into access tokens, marked ``typ: Bearer``);
- accepted with ``auto`` only on positive evidence: the RFC 9068 header ``typ: at+jwt``, the
  claim ``typ: Bearer``, or a claim id tokens never carry (``scope``, ``scp``, ``client_id``,
  Okta's ``cid``);
- ``rfc9068`` accepts only the ``at+jwt`` header; ``off`` skips the check (providers whose
  access tokens are id tokens in all but name, e.g. dex — then the audience alone decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

AccessTokenCheck = Literal["auto", "rfc9068", "off"]
RFC9068_TYPES = frozenset({"at+jwt", "application/at+jwt"})
PLAIN_TYPES = frozenset({"jwt", "application/jwt"})
ID_TOKEN_ONLY = ("at_hash", "c_hash", "s_hash")
ACCESS_TOKEN_ONLY = ("scope", "scp", "client_id", "cid")


def not_an_access_token(header: Mapping[str, Any], claims: Mapping[str, Any],
                        check: AccessTokenCheck) -> str | None:
    """Why this verified JWT is not accepted as an access token, or None when it is."""
    if check == "off":
        return None
    typ = str(header.get("typ", "")).lower()
    if check == "rfc9068":
        return None if typ in RFC9068_TYPES else \
            f"not an RFC 9068 access token (header typ {header.get('typ')!r}, not at+jwt)"
    if typ and typ not in RFC9068_TYPES | PLAIN_TYPES:
        return f"a {header.get('typ')} token is not an access token"
    kind = str(claims.get("typ", "")).lower()
    if kind and kind != "bearer":
        return f"a token of type {claims.get('typ')!r} is not an access token"
    found = [name for name in ID_TOKEN_ONLY if name in claims]
    if "nonce" in claims and kind != "bearer":
        found.append("nonce")
    if found:
        return f"an id token is not an access token (it carries {', '.join(found)})"
    if typ in RFC9068_TYPES or kind == "bearer" or any(n in claims for n in ACCESS_TOKEN_ONLY):
        return None
    return ("no sign of an access token (no at+jwt header, no scope, scp or client_id "
            "claim); see KUBEPIE_ACCESS_TOKEN_CHECK")
