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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import REPO, manifests

ATOMIC_KINDS = ("secret", "configMap", "projected", "downwardAPI")


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in manifests((REPO / "deploy").rglob("*.yaml")):
        if "jupyterhub" in path.parts or "overlays" in path.parts:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
                yield f"{path.relative_to(REPO)}:{doc['metadata']['name']}", \
                    doc["spec"]["template"]["spec"]


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


@pytest.mark.parametrize("name,pod", list(workloads()), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_every_mounted_secret_and_configmap_is_readable_by_its_reader(
        name: str, pod: dict[str, Any]) -> None:
    assert problems(pod) == [], name


def test_the_rules_catch_the_crash_loop_of_kubernetes_57923() -> None:
    pod = {"securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
           "containers": [{"name": "gateway", "securityContext": {
               "capabilities": {"drop": ["ALL"]}},
               "volumeMounts": [{"name": "secrets", "mountPath": "/etc/kubepie"}]}],
           "volumes": [{"name": "secrets", "secret": {"secretName": "x",
                                                       "defaultMode": 0o400}}]}
    assert problems(pod) == ["gateway (uid 65534, groups [65534]) cannot read secrets "
                             "(owner 0:0, mode 0400)"]
    pod["securityContext"]["fsGroup"] = 65534
    assert problems(pod) == []  # fsGroup: the group's, mode 0440


def test_all_manifests_are_seen() -> None:
    names = {name.split(":")[0] for name, _ in workloads()}
    assert {str(Path("deploy/kubepie/gateway.yaml")), "deploy/kubepie/webhook.yaml",
            "deploy/metrics/daemonset.yaml", "deploy/lxcfs/daemonset.yaml"} <= names
