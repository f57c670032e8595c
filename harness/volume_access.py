"""Every Secret and ConfigMap a manifest mounts is readable by the process that reads it —
checked with kubelet's rules for the files it writes, because a mode that looks strict can
leave the reader locked out and the pod crash-looping (kubernetes/kubernetes#57923: Secret
files are root's; ``defaultMode: 0400`` under ``runAsUser: 65534`` without ``fsGroup`` is
unreadable).

kubelet's rules (pkg/volume: atomic writer volumes, SetVolumeOwnership): each file is owned
by uid 0 and gid 0 with the item's ``mode``, else the volume's ``defaultMode``, else 0644;
with the pod's ``fsGroup`` the group becomes fsGroup and the mode gains 0440 (read-only
volumes), and every container gets fsGroup as a supplementary group. A process reads a file
as its owner, its group or anyone, by those bits; uid 0 keeps CAP_DAC_OVERRIDE only while
capabilities are not dropped.
"""

from __future__ import annotations

from typing import Any

ATOMIC_KINDS = ("secret", "configMap", "projected", "downwardAPI")


def file_modes(volume: dict[str, Any], fs_group: int | None) -> list[tuple[int, int, int]]:
    """(uid, gid, mode) of the files kubelet writes for an atomic-writer volume."""
    kind = next(k for k in ATOMIC_KINDS if k in volume)
    source = volume[kind]
    default = source.get("defaultMode", 0o644)
    items: list[dict[str, Any]] = list(source.get("items", []))
    for projected in source.get("sources", []):
        for inner in projected.values():
            items.extend(inner.get("items", [{}]))
    modes = [item.get("mode", default) for item in items] or [default]
    if fs_group is not None:
        return [(0, fs_group, mode | 0o440) for mode in modes]
    return [(0, 0, mode) for mode in modes]


def readable(uid: int, groups: set[int], root_caps: bool, owner: tuple[int, int, int]) -> bool:
    file_uid, file_gid, mode = owner
    if uid == 0 and root_caps:
        return True
    if uid == file_uid:
        return bool(mode & 0o400)
    if file_gid in groups:
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def problems(pod: dict[str, Any], image_uid: int = 0) -> list[str]:
    found = []
    pod_context = pod.get("securityContext") or {}
    fs_group = pod_context.get("fsGroup")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        context = {**pod_context, **(container.get("securityContext") or {})}
        uid = context.get("runAsUser", image_uid)
        groups = {context.get("runAsGroup", 0), *pod_context.get("supplementalGroups", [])}
        if fs_group is not None:
            groups.add(fs_group)
        dropped = "ALL" in (context.get("capabilities") or {}).get("drop", [])
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if not any(k in volume for k in ATOMIC_KINDS):
                continue
            for owner in file_modes(volume, fs_group):
                if not readable(uid, groups, not dropped, owner):
                    found.append(f"{container['name']} (uid {uid}, groups {sorted(groups)}) "
                                 f"cannot read {mount['name']} (owner {owner[0]}:{owner[1]}, "
                                 f"mode {owner[2]:04o})")
    return found
