"""Who a user is on disk: claims from the identity provider → username, uid, gids.

The mapping is a security boundary: processes run with exactly these ids, so anything
doubtful is refused (with a reason the user can pass on to the operator) rather than guessed.
uid/gid 0 and ids outside the configured range are never accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# What Kubernetes labels, POSIX user names and our URLs can all carry.
USERNAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,62}$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
# A groups claim sent as one string: "xray,bio", "xray bio" or "xray, bio" (glewlwyd joins
# multi-valued claims; some LDAP-backed providers do the same).
GROUP_SEPARATORS = re.compile(r"[,\s]+")


class IdentityRefused(Exception):
    """The claims do not give a usable identity; the message says which claim and why."""


@dataclass(frozen=True)
class Identity:
    username: str
    uid: int
    gid: int
    gids: tuple[int, ...] = ()          # supplementary
    groups: tuple[str, ...] = ()        # names of the mapped groups (for group mounts)

    def as_claims(self) -> dict[str, Any]:
        return {"username": self.username, "uid": self.uid, "gid": self.gid,
                "gids": list(self.gids), "groups": list(self.groups)}

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Identity:
        """The inverse of :meth:`as_claims` (sessions, access keys, pod identities)."""
        try:
            return cls(str(claims["username"]), int(claims["uid"]), int(claims["gid"]),
                       tuple(int(g) for g in claims.get("gids", ())),
                       tuple(str(g) for g in claims.get("groups", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise IdentityRefused(f"malformed identity: {exc}") from None


@dataclass(frozen=True)
class ClaimMapping:
    username_claim: str = "preferred_username"
    uid_claim: str = "uidNumber"
    gid_claim: str = "gidNumber"
    groups_claim: str = "groups"
    group_gids: Mapping[str, int] = field(default_factory=dict)  # group name → gid
    min_id: int = 1000
    max_id: int = 2**31 - 1

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        username = claims.get(self.username_claim)
        if not isinstance(username, str) or not USERNAME.match(username):
            raise IdentityRefused(f"claim {self.username_claim!r} is missing or not a valid "
                                  f"user name: {username!r}")
        uid = self._id(claims, self.uid_claim)
        gid = self._id(claims, self.gid_claim)
        names = self.group_names(claims)
        mapped = tuple(sorted({n for n in names if n in self.group_gids}))
        for name in mapped:
            self._check_range(f"group {name!r} (gid {self.group_gids[name]})",
                              self.group_gids[name])
        gids = tuple(sorted({self.group_gids[n] for n in mapped} - {gid}))
        return Identity(username, uid, gid, gids, mapped)

    def _id(self, claims: Mapping[str, Any], name: str) -> int:
        value = claims.get(name)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)  # LDAP-backed providers often send numbers as strings
        if isinstance(value, bool) or not isinstance(value, int):
            raise IdentityRefused(f"claim {name!r} is missing or not a number: {value!r}")
        self._check_range(f"claim {name!r}", value)
        return value

    def _check_range(self, what: str, value: int) -> None:
        if value == 0:
            raise IdentityRefused(f"{what}: id 0 (root) is never accepted")
        if not self.min_id <= value <= self.max_id:
            raise IdentityRefused(f"{what}: {value} is outside the accepted range "
                                  f"{self.min_id}-{self.max_id}")

    def group_names(self, claims: Mapping[str, Any]) -> list[str]:
        """The group names the claims carry: a JSON list, or one separated string."""
        value = claims.get(self.groups_claim, [])
        if value is None:
            return []
        if isinstance(value, str):
            value = [v for v in GROUP_SEPARATORS.split(value) if v]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise IdentityRefused(f"claim {self.groups_claim!r} is neither a list of names "
                                  "nor a comma/space-separated string")
        # Keycloak sends group paths ("/xray"); other names are compared as they are.
        return [v.strip("/") for v in value]


def parse_group_gids(spec: str | Mapping[str, Any]) -> dict[str, int]:
    """``xray=5000,bio=5001`` (or a mapping) → {"xray": 5000, "bio": 5001}."""
    items = [f"{k}={v}" for k, v in spec.items()] if isinstance(spec, Mapping) \
        else [p.strip() for p in spec.split(",")]
    mapping: dict[str, int] = {}
    for item in filter(None, items):
        name, sep, gid = item.partition("=")
        name = name.strip().strip("/")
        if not sep or not GROUP_NAME.match(name) or not gid.strip().isdigit():
            raise ValueError(f"{item!r}: expected group=gid, e.g. xray=5000")
        if name in mapping:
            raise ValueError(f"group {name!r} is given twice")
        mapping[name] = int(gid)
    return mapping


def parse_id_range(spec: str) -> tuple[int, int]:
    """``1000-2147483647`` → (1000, 2147483647); 0 is never inside."""
    low, sep, high = spec.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit() or \
            not 1 <= int(low) <= int(high) <= 2**32 - 2:
        raise ValueError(f"{spec!r}: expected low-high, e.g. 1000-2147483647 (never 0)")
    return int(low), int(high)
