"""Profiles built from compute instances and images, as seed 004's profileList describes them.

An operator lists compute instances once (CPU, memory, GPU resource and amount, node, walltime,
an optional required role or group) and profiles that name the instances they allow and the
images they offer. Each allowed (profile, instance) pair becomes one KubeSpawner profile, so
the spawn page, the limits it shows, the walltime, and who may start it all come from the same
entry; images stay a choice inside the profile (KubeSpawner ``profile_options``).

    c.Sidecars.compute_instances = {"a100_20g": {"display_name": "Dedicated A100 20G",
        "cpu_limit": 8, "mem_limit": "100G", "gpu_resource_name": "nvidia.com/mig-2g.20gb",
        "gpu_limit": 1, "gpu_memory": "20Gi", "node_selector": {"node_type": "a100"},
        "walltime": "12h", "required_role": "a100-20g"}, ...}
    c.Sidecars.profiles = [{"display_name": "Beamline analysis", "slug": "beamline",
        "allowed_compute_instances": ["a100_20g", ...], "profile_options": {"image": ...}}]
"""

from __future__ import annotations

import re
from typing import Any

from services.hub.profiles import Profile, ProfileError

# Instance keys that become KubeSpawner overrides as they are.
OVERRIDES = ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee", "node_selector",
             "tolerations", "image")
# Keys the sidecars read from the built profile: a profile entry may set its own time and disk
# limits, the rest belong to the instance (who may use an A100 slice is the instance's business).
TIME_KEYS = ("walltime", "idle", "disk_limit")
INSTANCE_ONLY = ("gpu_memory", "required_role", "required_group")
INSTANCE_KEYS = frozenset({"display_name", "description", "gpu_resource_name", "gpu_limit",
                           "gpu_guarantee", "node_type", *OVERRIDES, *TIME_KEYS,
                           *INSTANCE_ONLY})
PROFILE_ENTRY_KEYS = frozenset({"display_name", "description", "slug", "default",
                                "allowed_compute_instances", "profile_options",
                                "kubespawner_override", *TIME_KEYS})


def build_profiles(instances: dict[str, dict[str, Any]], entries: list[dict[str, Any]]
                   ) -> list[Profile]:
    """KubeSpawner's profile_list: one profile per (profile, allowed instance)."""
    for key, instance in instances.items():
        _check_keys(f"compute instance {key!r}", instance, INSTANCE_KEYS)
    built: list[Profile] = []
    for entry in entries:
        name = str(entry.get("slug") or entry.get("display_name") or "?")
        _check_keys(f"profile {name!r}", entry, PROFILE_ENTRY_KEYS)
        allowed = entry.get("allowed_compute_instances") or []
        if not allowed:
            raise ProfileError(f"profile {name!r}: allowed_compute_instances is empty")
        for key in allowed:
            if key not in instances:
                raise ProfileError(f"profile {name!r}: no compute instance {key!r} (known: "
                                   f"{', '.join(sorted(instances)) or 'none'})")
            built.append(_combine(entry, key, instances[key], single=len(allowed) == 1))
    slugs = [str(p["slug"]) for p in built]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    if duplicates:
        raise ProfileError(f"two profiles would have the slug {duplicates[0]!r}")
    if sum(1 for p in built if p.get("default")) > 1:
        first = next(p for p in built if p.get("default"))
        for profile in built:
            if profile is not first:
                profile.pop("default", None)
    return built


def _combine(entry: dict[str, Any], key: str, instance: dict[str, Any], single: bool
             ) -> Profile:
    base_slug = str(entry.get("slug") or _slug(str(entry.get("display_name", ""))))
    instance_name = str(instance.get("display_name") or key)
    override: dict[str, Any] = {k: instance[k] for k in OVERRIDES if k in instance}
    if instance.get("node_type") and "node_selector" not in override:
        override["node_selector"] = {"node_type": instance["node_type"]}
    if instance.get("gpu_resource_name"):
        resource = str(instance["gpu_resource_name"])
        if "gpu_limit" in instance:
            override["extra_resource_limits"] = {resource: str(instance["gpu_limit"])}
        if "gpu_guarantee" in instance:
            override["extra_resource_guarantees"] = {resource: str(instance["gpu_guarantee"])}
    override.update(entry.get("kubespawner_override") or {})
    profile: Profile = {
        "display_name": str(entry.get("display_name", base_slug)) if single else
        f"{entry.get('display_name', base_slug)} — {instance_name}",
        "slug": base_slug if single else f"{base_slug}-{_slug(key)}",
        "kubespawner_override": override,
    }
    description = entry.get("description") or instance.get("description")
    if description:
        profile["description"] = str(description)
    for name in TIME_KEYS:
        if name in entry or name in instance:
            profile[name] = entry.get(name, instance.get(name))
    for name in INSTANCE_ONLY:
        if instance.get(name):
            profile[name] = instance[name]
    if entry.get("default"):
        profile["default"] = True
    if entry.get("profile_options"):
        profile["profile_options"] = entry["profile_options"]
    return profile


def _check_keys(what: str, item: dict[str, Any], known: frozenset[str]) -> None:
    if not isinstance(item, dict):
        raise ProfileError(f"{what}: expected a mapping, got {type(item).__name__}")
    unknown = sorted(set(item) - known)
    if unknown:
        raise ProfileError(f"{what}: unknown key {unknown[0]!r} (known: "
                           f"{', '.join(sorted(known))})")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
