"""The profile a server was started with, read the way KubeSpawner reads it.

Profiles are KubeSpawner's ``profile_list`` entries; the sidecars add one optional key,
``walltime`` (``"30m"``, ``"12h"``), ``idle``, ``gpu_memory``, ``disk_limit``. The hooks,
the backstop and the spawn page all read them from here, so the limit a user is shown is the
limit that is enforced.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from services.runtime.durations import parse_duration
from services.runtime.quantities import parse_spawner_bytes
from services.runtime.units import size_text

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
    return _duration_of(profile, "walltime", default)


def idle_of(profile: Profile | None, default: str | float | None) -> float | None:
    """Seconds without activity after which the server stops; ``None``: never."""
    return _duration_of(profile, "idle", default)


def _duration_of(profile: Profile | None, key: str, default: str | float | None
                 ) -> float | None:
    value = default if profile is None or profile.get(key) in (None, "") else profile[key]
    if value in (None, "", "none", "unlimited"):
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        where = f"profile {slug_of(profile)!r}" if profile else f"the default {key}"
        raise ProfileError(f"{where}: {key} {value!r}: {exc}") from None
    if seconds <= 0:
        where = f"profile {slug_of(profile)!r}" if profile else f"the default {key}"
        raise ProfileError(f"{where}: {key} {value!r} must be longer than 0 (or none)")
    return seconds


def limits_summary(profile: Profile, default: str | float | None,
                   idle_default: str | float | None = None) -> str:
    """``Limits: 50GB RAM, 8 CPU, 10GB VRAM, 30 min, stops after 2 h idle`` for the spawn
    page, from the keys the spawner and the hooks apply (``kubespawner_override`` mem/cpu
    limits, ``gpu_memory``, ``disk_limit``, ``walltime``, ``idle``): what is shown is what
    is enforced."""
    override = profile.get("kubespawner_override") or {}
    parts = []
    if override.get("mem_limit"):
        parts.append(f"{_bytes_text(override['mem_limit'])} RAM")
    if override.get("cpu_limit"):
        parts.append(f"{float(override['cpu_limit']):g} CPU")
    if profile.get("gpu_memory"):
        parts.append(f"{_bytes_text(profile['gpu_memory'])} VRAM")
    if profile.get("disk_limit"):
        parts.append(f"{_bytes_text(profile['disk_limit'])} disk")
    seconds = walltime_of(profile, default)
    parts.append("no time limit" if seconds is None else walltime_text(seconds))
    idle = idle_of(profile, idle_default)
    if idle is not None:
        parts.append(f"stops after {walltime_text(idle)} idle")
    return "Limits: " + ", ".join(parts)


def disk_limit_of(profile: Profile | None) -> int | None:
    """A profile's ``disk_limit`` (``10G``, ``10Gi``, bytes) in bytes: the limit the status
    bar shows where the storage itself declares none (services/metrics/disk.py)."""
    value = (profile or {}).get("disk_limit")
    if value in (None, "", "none"):
        return None
    try:
        return parse_spawner_bytes(str(value))
    except ValueError:
        raise ProfileError(f"profile {slug_of(profile or {})!r}: disk_limit {value!r} is not a "
                           "size (e.g. 10G, 10Gi, 500M)") from None


def walltime_text(seconds: float) -> str:
    """``30 min``, ``12 h``, ``90 s``: the unit the number is whole in."""
    whole = round(seconds)
    if whole >= 3600 and whole % 3600 == 0:
        return f"{whole // 3600} h"
    if whole >= 60 and whole % 60 == 0:
        return f"{whole // 60} min"
    return f"{whole} s"


def _bytes_text(value: str | int) -> str:
    """KubeSpawner byte specifications (``50G``, ``512M``, bytes) as ``50GB``/``512MB``: binary,
    as KubeSpawner reads them (services/runtime/units.py)."""
    text = str(value).strip().removesuffix("i")  # Kubernetes' 10Gi reads as 10GB here too
    if text[-1:].upper() in ("K", "M", "G", "T"):
        return f"{text[:-1]}{text[-1].upper()}B"
    return size_text(float(text))


def with_limits(profile: Profile, default: str | float | None,
                idle_default: str | float | None = None) -> Profile:
    """The profile with its limits in front of its description (KubeSpawner's spawn page)."""
    summary = limits_summary(profile, default, idle_default)
    description = profile.get("description")
    return {**profile, "description": f"{summary}. {description}" if description else summary}
