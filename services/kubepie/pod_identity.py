"""The identity a gateway vouches for when it asks Kubernetes for a user's file server pod.

The gateway signs the verified identity (ES256, its private key) into an annotation of the
pod; the admission webhook holds only the public key, checks the signature, the audience,
the pod name it was issued for and a short expiry, and sets the pod's ids from it. Whoever
can create pods in the namespace still cannot mint an identity, and a copied annotation is
bound to one pod name and expires within minutes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from services.identity.claims import Identity, IdentityRefused

ANNOTATION = "kubepie.io/identity"
AUDIENCE = "kubepie-admission"
ALGORITHM = "ES256"
LIFETIME = 300  # seconds: enough for an API server to admit a pod, short for a replay


def load_key(path: Path) -> ECKey:
    """A PEM EC P-256 key, private for the gateway, public (or private) for the webhook."""
    try:
        return ECKey.import_key(path.read_bytes())
    except (OSError, JoseError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable EC P-256 key: {exc}") from None


def generate_key() -> tuple[str, str]:
    """A new (private, public) PEM pair, for operators setting kubepie up."""
    key = ECKey.generate_key("P-256")
    return (key.as_pem(private=True).decode(), key.as_pem(private=False).decode())


def sign(identity: Identity, pod_name: str, key: ECKey, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {**identity.as_claims(), "aud": AUDIENCE, "pod": pod_name,
                              "iat": issued, "exp": issued + LIFETIME}
    return jwt.encode({"alg": ALGORITHM}, claims, key)


def verify(token: str, pod_name: str, key: ECKey, *, now: float | None = None) -> Identity:
    """The identity, or :class:`IdentityRefused` with the reason."""
    try:
        decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        at = int(now if now is not None else time.time())
        jwt.JWTClaimsRegistry(now=at, leeway=30, aud={"essential": True, "value": AUDIENCE},
                              exp={"essential": True}, pod={"essential": True,
                                                            "value": pod_name}
                              ).validate(decoded.claims)
    except JoseError as exc:
        raise IdentityRefused(f"identity annotation rejected: {exc.description or exc}") \
            from None
    return Identity.from_claims(decoded.claims)
