"""The profile a server was started with, read the way KubeSpawner reads it.

Profiles are KubeSpawner's ``profile_list`` entries; the sidecars add one optional key,
``walltime`` (``"30m"``, ``"12h"``). The hooks, the backstop and the spawn page all read it from
here, so the limit a user is shown is the limit that is enforced.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from services.runtime.durations import format_duration, parse_duration

Profile = dict[str, Any]


class ProfileError(ValueError):
    """A profile is configured wrongly; the message names the profile and the key."""


def slug_of(profile: Profile) -> str:
    """KubeSpawner's slug: the explicit ``slug``, else the display name slugified."""
    if profile.get("slug"):
        return str(profile["slug"])
    name = str(profile.get("display_name", ""))
    try:  # python-slugify, as KubeSpawner does, where it is installed
        from slugify import slugify
    except ImportError:
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return str(slugify(name))


async def profiles_of(spawner: Any) -> list[Profile]:
    """The spawner's profile list, calling it first when it is a callable (as KubeSpawner does)."""
    profiles = getattr(spawner, "profile_list", None)
    if callable(profiles):
        profiles = profiles(spawner)
        if inspect.isawaitable(profiles):
            profiles = await profiles
    if isinstance(profiles, dict):  # Z2JH allows a dict; KubeSpawner sorts it by key
        profiles = [profiles[key] for key in sorted(profiles)]
    return [dict(p) for p in (profiles or [])]


def chosen_profile(profiles: list[Profile], user_options: dict[str, Any]) -> Profile | None:
    """The profile named in user_options, else the default one, else the first (KubeSpawner)."""
    if not profiles:
        return None
    wanted = user_options.get("profile")
    if wanted:
        for profile in profiles:
            if slug_of(profile) == wanted:
                return profile
        raise ProfileError(f"no profile with slug {wanted!r}")
    return next((p for p in profiles if p.get("default")), profiles[0])


def walltime_of(profile: Profile | None, default: str | float | None) -> float | None:
    """Seconds of walltime for ``profile``; ``None`` means no limit."""
    value = default if profile is None or profile.get("walltime") in (None, "") \
        else profile["walltime"]
    if value in (None, "", "none", "unlimited"):
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        where = f"profile {slug_of(profile)!r}" if profile else "the default walltime"
        raise ProfileError(f"{where}: walltime {value!r}: {exc}") from None


def limits_summary(profile: Profile, default: str | float | None) -> str:
    """``"30 min"``-style text for the spawn page: what the user will get."""
    seconds = walltime_of(profile, default)
    return "no time limit" if seconds is None else f"time limit {format_duration(seconds)}"
