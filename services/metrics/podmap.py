"""Find the container cgroups of Kubernetes pods on a node (cgroup v2, or one v1 hierarchy).

The kubelet lays pods out in one of two ways, and the runtime names containers its own way:

- systemd driver: ``kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with
  _>.slice/cri-containerd-<id>.scope`` (CRI-O: ``crio-<id>.scope``, cri-dockerd: ``docker-…``)
- cgroupfs driver: ``kubepods/burstable/pod<uid>/<id>`` (CRI-O: ``crio-<id>``)
- kubelet's ``--cgroup-root`` (kind: ``/kubelet``) puts all of it one level down:
  ``kubelet/kubepods/…`` or ``kubelet.slice/kubelet-kubepods.slice/…``

Guaranteed pods sit directly under ``kubepods``. CRI-O with crun on v2 puts the container's
processes one level below its cgroup (``crio-<id>.scope/container``): the container's cgroup
is still ``crio-<id>.scope`` (v2 counts children in it), and a process's cgroup path is
matched by its last component that is a container id, not its last component. Sandboxes
("pause") and CRI-O's ``conmon`` cgroups are not containers of the pod spec and are skipped
by id when matched against pods.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
POD_DIR = re.compile(rf"(?:^|-)pod({_UID})(?:\.slice)?$")
CONTAINER_DIR = re.compile(r"^(?:(?:cri-containerd|crio|docker)-)?([0-9a-f]{64})(?:\.scope)?$")
QOS_DIRS = ("kubepods-burstable.slice", "kubepods-besteffort.slice", "burstable", "besteffort",
            "kubelet-kubepods-burstable.slice", "kubelet-kubepods-besteffort.slice")
KUBEPODS_DIRS = ("kubepods.slice", "kubepods", "kubelet/kubepods",
                 "kubelet.slice/kubelet-kubepods.slice")


@dataclass(frozen=True)
class ContainerCgroup:
    pod_uid: str
    container_id: str
    path: str


def pod_uid_of(name: str) -> str | None:
    match = POD_DIR.search(name)
    return match.group(1).replace("_", "-") if match else None


def container_id_of(name: str) -> str | None:
    match = CONTAINER_DIR.match(name)
    return match.group(1) if match else None


def container_in_path(path: str) -> str | None:
    """The container a cgroup path (``/proc/<pid>/cgroup``) is in: its deepest component
    that names one (``…/crio-<id>.scope/container`` → ``<id>``)."""
    for part in reversed(path.rstrip("/").split("/")):
        found = container_id_of(part)
        if found is not None:
            return found
    return None


def scan(root: str) -> Iterator[ContainerCgroup]:
    """Every container cgroup under ``root`` (the node's ``/sys/fs/cgroup``)."""
    for kubepods in KUBEPODS_DIRS:
        top = f"{root}/{kubepods}"
        if os.path.isdir(top):
            yield from _pods_in(top)
            for qos in QOS_DIRS:
                if os.path.isdir(f"{top}/{qos}"):
                    yield from _pods_in(f"{top}/{qos}")


def _pods_in(directory: str) -> Iterator[ContainerCgroup]:
    for entry in _subdirs(directory):
        uid = pod_uid_of(entry.name)
        if uid is None:
            continue
        for child in _subdirs(entry.path):
            container_id = container_id_of(child.name)
            if container_id is not None:
                yield ContainerCgroup(uid, container_id, child.path)


def _subdirs(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
    except OSError:  # removed while we looked
        return []


def runtime_container_id(status_id: str) -> str:
    """``containerd://<id>`` / ``cri-o://<id>`` / ``docker://<id>`` (pod status) → ``<id>``."""
    return status_id.rpartition("://")[2]
