"""Who may use which profile: a profile may require a JupyterHub role or group.

Seed 004's profile list offers compute instances (an A100 slice, a large CPU node) that only
some users may start. A profile with ``required_role: a100-20g`` (or a list) or
``required_group: xray`` is offered to, and startable by, users who have one of those roles
(their own or through a group) or are in one of those groups. The spawn page lists only the
profiles a user may use; a forbidden choice sent by hand is refused by the pre-spawn hook,
before anything is created, with a message that names what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.hub.profiles import Profile, ProfileError, chosen_profile, profiles_of

GATE_KEYS = ("required_role", "required_group")


class ProfileForbidden(ProfileError):
    """The user may not use that profile; the message says what it needs."""


@dataclass(frozen=True)
class Access:
    roles: frozenset[str]
    groups: frozenset[str]

    @classmethod
    def of(cls, user: Any) -> Access:
        """A JupyterHub user's roles, its groups' roles, and its groups."""
        groups = list(getattr(user, "groups", None) or [])
        roles = {role.name for role in getattr(user, "roles", None) or []}
        roles |= {role.name for group in groups for role in getattr(group, "roles", None) or []}
        return cls(frozenset(roles), frozenset(group.name for group in groups))

    def may_use(self, profile: Profile) -> bool:
        roles, groups = _names(profile.get("required_role")), _names(profile.get("required_group"))
        if not roles and not groups:
            return True
        return bool(roles & self.roles or groups & self.groups)


def is_gated(profiles: Iterable[Profile]) -> bool:
    return any(profile.get(key) for profile in profiles for key in GATE_KEYS)


def visible(profiles: list[Profile], access: Access) -> list[Profile]:
    return [profile for profile in profiles if access.may_use(profile)]


def choose(profiles: list[Profile], access: Access, user_options: dict[str, Any]
           ) -> Profile | None:
    """The profile to start: the one asked for, if this user may use it; else the default
    among the user's own (KubeSpawner's rule: the one marked default, else the first)."""
    if not profiles:
        return None
    wanted = user_options.get("profile")
    if wanted:
        profile = chosen_profile(profiles, user_options)  # KubeSpawner's lookup by slug
        assert profile is not None
        if not access.may_use(profile):
            raise ProfileForbidden(f"the profile {wanted!r} is for {_needs(profile)}; "
                                   "ask your facility for access or pick another")
        return profile
    mine = visible(profiles, access)
    if not mine:
        raise ProfileForbidden("none of the profiles is open to you; ask your facility")
    return next((p for p in mine if p.get("default")), mine[0])


class GatedProfiles:
    """KubeSpawner's ``profile_list`` as a callable: each user sees the profiles they may use.
    ``all`` keeps the whole list for the pre-spawn hook's check."""

    def __init__(self, profiles: list[Profile]) -> None:
        self.all = profiles

    def __call__(self, spawner: Any) -> list[Profile]:
        return visible(self.all, Access.of(spawner.user))


def _names(value: object) -> set[str]:
    if isinstance(value, str):
        return {value} if value else set()
    if isinstance(value, list | tuple):
        return {str(item) for item in value if item}
    return set()


def _needs(profile: Profile) -> str:
    roles = sorted(_names(profile.get("required_role")))
    groups = sorted(_names(profile.get("required_group")))
    parts = ([f"role {' or '.join(roles)}"] if roles else []) + \
        ([f"group {' or '.join(groups)}"] if groups else [])
    return "users with " + " or ".join(parts)


async def all_profiles_of(spawner: Any) -> list[Profile]:
    """Every profile, whoever the user is: the hook decides with the whole list."""
    gated = getattr(spawner, "profile_list", None)
    if isinstance(gated, GatedProfiles):
        return [dict(p) for p in gated.all]
    return await profiles_of(spawner)
