"""What the hooks decide for one server, independent of where it runs.

A plan lists the sidecars (command, environment, port) and the variables the notebook gets.
KubeSpawner turns it into extra containers of the pod; the local spawner into processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sidecar:
    name: str
    args: list[str]
    env: dict[str, str]
    port: int
    run_as_user: int | None = None  # None: ContainerSettings.run_as_user
    mounts_shared_dir: bool = False  # only sidecars that need the shared folder see it


@dataclass
class SidecarPlan:
    sidecars: list[Sidecar] = field(default_factory=list)
    notebook_env: dict[str, str] = field(default_factory=dict)
    shared_dir: str | None = None  # an emptyDir mounted in the notebook and every sidecar
    # Read by the metrics node agent: the profile and the walltime of this server.
    pod_annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerSettings:
    """How sidecar containers look in a pod."""

    image: str
    pull_policy: str
    resources: dict[str, Any]
    run_as_user: int


def container_for(sidecar: Sidecar, settings: ContainerSettings) -> dict[str, Any]:
    """A Kubernetes container spec: non-root, read-only, no capabilities, small."""
    return {
        "name": sidecar.name,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "args": sidecar.args,
        "env": [{"name": k, "value": v} for k, v in sorted(sidecar.env.items())],
        "resources": settings.resources,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": sidecar.run_as_user or settings.run_as_user,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def apply_to_pod(plan: SidecarPlan, pod: Any, settings: ContainerSettings) -> Any:
    """Add the plan's containers and notebook variables to a KubeSpawner pod (V1Pod).

    Runs as KubeSpawner's ``modify_pod_hook``, after profile overrides are applied, so a
    profile's ``extra_containers`` or ``environment`` cannot drop the sidecars.
    """
    containers = pod.spec.containers
    notebook = next((c for c in containers if _name(c) == "notebook"), containers[0])
    env = _get(notebook, "env")
    if env is None:
        env = []
        _set(notebook, "env", env)
    env.extend({"name": k, "value": v} for k, v in sorted(plan.notebook_env.items()))
    taken = {_name(c) for c in containers}
    sharing = [notebook]
    for sidecar in plan.sidecars:
        if sidecar.name in taken:
            raise ValueError(f"the pod already has a container named {sidecar.name!r}")
        containers.append(container_for(sidecar, settings))
        if sidecar.mounts_shared_dir:
            sharing.append(containers[-1])
    if plan.shared_dir:
        _share_dir(pod, plan.shared_dir, sharing)
    if plan.pod_annotations:
        if pod.metadata.annotations is None:
            pod.metadata.annotations = {}
        pod.metadata.annotations.update(plan.pod_annotations)
    return pod


SHARED_VOLUME = "sidecars-run"


def _share_dir(pod: Any, path: str, users: list[Any]) -> None:
    """An in-memory emptyDir at ``path`` in the notebook and the sidecar containers."""
    volumes = pod.spec.volumes
    if volumes is None:
        volumes = pod.spec.volumes = []
    volumes.append({"name": SHARED_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    for container in users:
        mounts = _get(container, "volume_mounts" if not isinstance(container, dict)
                      else "volumeMounts")
        mount = {"name": SHARED_VOLUME, "mountPath": path}
        if mounts is None:
            _set(container, "volume_mounts" if not isinstance(container, dict)
                 else "volumeMounts", [mount])
        else:
            mounts.append(mount)


def _name(container: Any) -> str | None:
    return container.get("name") if isinstance(container, dict) else container.name


def _get(container: Any, key: str) -> Any:
    return container.get(key) if isinstance(container, dict) else getattr(container, key)


def _set(container: Any, key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    else:
        setattr(container, key, value)
