"""The mapping's settings, the same names wherever they are set: ``KUBEPIE_UID_CLAIM`` for the
gateway, ``c.Sidecars.uid_claim`` for the hub hooks."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from services.identity.claims import ClaimMapping, parse_group_gids, parse_id_range

DEFAULTS: dict[str, str] = {
    "username_claim": "preferred_username",
    "uid_claim": "uidNumber",
    "gid_claim": "gidNumber",
    "groups_claim": "groups",
    "group_gids": "",
    "id_range": "1000-2147483647",
}
HELP: dict[str, str] = {
    "username_claim": "claim with the user name",
    "uid_claim": "claim with the numeric uid",
    "gid_claim": "claim with the numeric primary gid",
    "groups_claim": "claim with the group names (a list, or one comma/space-separated "
                    "string)",
    "group_gids": "group name → gid for supplementary groups, e.g. xray=5000,bio=5001 "
                  "(other groups are ignored)",
    "id_range": "accepted uids/gids (0, root, never is)",
}


class IdentitySettings(BaseSettings):
    """Mixed into a service's settings; its prefix applies (``KUBEPIE_`` …)."""

    username_claim: str = Field(DEFAULTS["username_claim"], min_length=1,
                                description=HELP["username_claim"])
    uid_claim: str = Field(DEFAULTS["uid_claim"], min_length=1, description=HELP["uid_claim"])
    gid_claim: str = Field(DEFAULTS["gid_claim"], min_length=1, description=HELP["gid_claim"])
    groups_claim: str = Field(DEFAULTS["groups_claim"], min_length=1,
                              description=HELP["groups_claim"])
    group_gids: str = Field(DEFAULTS["group_gids"], description=HELP["group_gids"])
    id_range: str = Field(DEFAULTS["id_range"], description=HELP["id_range"])

    @model_validator(mode="after")
    def _mapping_checked(self) -> IdentitySettings:
        self._mapping = mapping_from(self.username_claim, self.uid_claim, self.gid_claim,
                                     self.groups_claim, self.group_gids, self.id_range,
                                     prefix=_prefix(self))
        return self

    @property
    def claim_mapping(self) -> ClaimMapping:
        return self._mapping


def mapping_from(username_claim: str, uid_claim: str, gid_claim: str, groups_claim: str,
                 group_gids: str | dict[str, Any], id_range: str, *,
                 prefix: str = "") -> ClaimMapping:
    """A checked :class:`ClaimMapping`; a ``ValueError`` names the bad setting."""
    try:
        gids = parse_group_gids(group_gids)
    except ValueError as exc:
        raise ValueError(f"{prefix}GROUP_GIDS: {exc}") from None
    try:
        low, high = parse_id_range(id_range)
    except ValueError as exc:
        raise ValueError(f"{prefix}ID_RANGE: {exc}") from None
    outside = {g: n for g, n in gids.items() if not low <= n <= high}
    if outside:
        name, gid = next(iter(outside.items()))
        raise ValueError(f"{prefix}GROUP_GIDS: group {name!r} has gid {gid}, outside "
                         f"{prefix}ID_RANGE {low}-{high}")
    return ClaimMapping(username_claim, uid_claim, gid_claim, groups_claim, gids, low, high)


def _prefix(settings: BaseSettings) -> str:
    return str(settings.model_config.get("env_prefix", "")).upper()
