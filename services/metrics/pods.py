"""JupyterHub user pods on this node, kept current by a Kubernetes list + watch.

Works on the raw JSON of the API (``raw_object``), so what the tests feed in is exactly what a
real API server sends. Users and servers come from KubeSpawner's annotations (the unescaped
names) with its labels as fallback; profile and walltime from the annotations our hook adds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.contract import (
    PROFILE_ANNOTATION,
    WALLTIME_DEADLINE_ANNOTATION,
    WALLTIME_LIMIT_ANNOTATION,
)
from services.metrics.podmap import runtime_container_id

log = logging.getLogger(__name__)

USER_KEY = "hub.jupyter.org/username"
SERVER_KEY = "hub.jupyter.org/servername"


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    gpu_memory_limit_bytes: int | None = None


@dataclass(frozen=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    user: str
    server: str
    profile: str
    containers: Mapping[str, ContainerInfo] = field(default_factory=dict)  # by runtime id
    walltime_limit_seconds: float | None = None
    walltime_deadline: datetime | None = None


def pod_info(pod: Mapping[str, Any], gpu_memory_per_unit: Mapping[str, int]) -> PodInfo | None:
    """A pod's JSON → what the metrics need; ``None`` for pods that are not a user's server."""
    meta = pod.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    user = annotations.get(USER_KEY) or labels.get(USER_KEY)
    if not user or not meta.get("uid"):
        return None
    limits_by_name = {
        c["name"]: _gpu_memory_limit((c.get("resources") or {}).get("limits") or {},
                                     gpu_memory_per_unit)
        for c in (pod.get("spec") or {}).get("containers") or []
    }
    containers = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("containerID"):
            containers[runtime_container_id(status["containerID"])] = ContainerInfo(
                status["name"], limits_by_name.get(status["name"]))
    return PodInfo(
        uid=meta["uid"], namespace=meta.get("namespace", ""), name=meta.get("name", ""),
        user=user, server=annotations.get(SERVER_KEY) or labels.get(SERVER_KEY) or "",
        profile=annotations.get(PROFILE_ANNOTATION, ""), containers=containers,
        walltime_limit_seconds=_float(annotations.get(WALLTIME_LIMIT_ANNOTATION)),
        walltime_deadline=_timestamp(annotations.get(WALLTIME_DEADLINE_ANNOTATION)),
    )


def _gpu_memory_limit(limits: Mapping[str, Any], per_unit: Mapping[str, int]) -> int | None:
    total = 0
    for resource, bytes_per_unit in per_unit.items():
        if resource in limits:
            try:
                total += int(limits[resource]) * bytes_per_unit
            except (TypeError, ValueError):
                continue
    return total or None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


class PodIndex:
    """The current user pods by uid; replaced wholesale so readers in threads see a snapshot."""

    def __init__(self, gpu_memory_per_unit: Mapping[str, int] | None = None) -> None:
        self._per_unit = dict(gpu_memory_per_unit or {})
        self._pods: dict[str, PodInfo] = {}
        self.synced = False

    @property
    def pods(self) -> Mapping[str, PodInfo]:
        return self._pods

    def replace(self, pods: list[Mapping[str, Any]]) -> None:
        infos = (pod_info(p, self._per_unit) for p in pods)
        self._pods = {i.uid: i for i in infos if i is not None}
        self.synced = True

    def apply(self, event_type: str, pod: Mapping[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        pods = dict(self._pods)
        info = pod_info(pod, self._per_unit)
        if event_type == "DELETED" or info is None:
            pods.pop(uid, None)
        else:
            pods[uid] = info
        self._pods = pods
