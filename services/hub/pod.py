"""The plan as parts of a KubeSpawner pod, and the server's own Secret.

No credential is ever written into the pod spec (anyone who may ``get pods`` reads it, the
metrics agent included): each one is a key of the server's Secret (created right after the
pod, owned by it, deleted at stop) or of a Secret the operator keeps, and reaches exactly the
one container that needs it — as a file (a ``projected`` volume of just its keys) for the
sidecars, as ``valueFrom.secretKeyRef`` for the notebook's own JupyterHub token.

With the user's identity (``c.Sidecars.identity_from_claims``) the notebook container runs as
the user's uid, gid and groups; an init container in the notebook's own image merges the
user's passwd/group entries into the image's files, mounted read-only over ``/etc/passwd`` and
``/etc/group``; the storage definition's folders are mounted at their paths, ``$HOME`` is the
home folder. ``fsGroup`` is removed: kubelet would chown every file of a volume that supports
it to that group at each start, and add that gid to every user (Z2JH's default is 100).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from services.contract import NOTEBOOK_TOKEN_KEY, SECRET_MOUNT_ROOT
from services.hub.plan import ContainerSettings, Lxcfs, Sidecar, SidecarPlan, UserSession
from services.identity.nss import MERGE_SCRIPT, NSS_DIR

SHARED_VOLUME = "sidecars-run"
NSS_VOLUME = "sidecars-nss"
SECRETS_VOLUME = "sidecars-secrets-{container}"
NOTEBOOK_TOKEN_ENVS = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")
LABEL = "app.kubernetes.io/managed-by"


def secret_name(pod_name: str) -> str:
    """The server's Secret: named after its pod (KubeSpawner keeps the pod name in state)."""
    return f"{pod_name}-sidecars"


def secret_manifest(plan: SidecarPlan, name: str, pod: dict[str, Any]) -> dict[str, Any]:
    """The server's Secret, owned by its pod: garbage-collected with it if the hub is gone."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": name, "namespace": meta.get("namespace"),
            "labels": {LABEL: "jupyterhub-sidecars",
                       "hub.jupyter.org/username": (meta.get("labels") or {}).get(
                           "hub.jupyter.org/username", "")},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                 "uid": meta["uid"], "blockOwnerDeletion": True}],
        },
        "data": {key: base64.b64encode(value.encode()).decode()
                 for key, value in sorted(plan.secrets.items())},
    }


def apply_to_pod(plan: SidecarPlan, pod: Any, settings: ContainerSettings,
                 server_secret: str) -> Any:
    """Add the plan to a KubeSpawner pod (V1Pod), in ``KubeSpawner.modify_pod_hook``.

    It runs after profile overrides are applied, so a profile's ``extra_containers`` or
    ``environment`` cannot drop the sidecars.
    """
    spec = pod.spec
    containers = spec.containers
    notebook = next((c for c in containers if _get(c, "name") == "notebook"), containers[0])
    env = _list(notebook, "env")
    env.extend({"name": k, "value": v} for k, v in sorted(plan.notebook_env.items()))
    named = {_get(item, "name") for item in env}
    env.extend({"name": k, "value": v} for k, v in sorted(plan.notebook_env_defaults.items())
               if k not in named)
    if NOTEBOOK_TOKEN_KEY in plan.secrets:
        _token_from_secret(env, server_secret)
    taken = {_get(c, "name") for c in containers}
    sharing = [notebook]
    for sidecar in plan.sidecars:
        if sidecar.name in taken:
            raise ValueError(f"the pod already has a container named {sidecar.name!r}")
        container = container_for(sidecar, settings)
        containers.append(container)
        if sidecar.mounts_shared_dir:
            sharing.append(container)
        if sidecar.secret_files:
            _mount_secrets(spec, container, sidecar, plan, server_secret)
    if plan.shared_dir:
        _share_dir(spec, plan.shared_dir, sharing)
    if plan.session is not None:
        _as_the_user(pod, notebook, plan.session)
    if plan.lxcfs is not None:
        _mount_lxcfs(spec, notebook, plan.lxcfs)
    if plan.pod_annotations:
        if pod.metadata.annotations is None:
            pod.metadata.annotations = {}
        pod.metadata.annotations.update(plan.pod_annotations)
    return pod


def container_for(sidecar: Sidecar, settings: ContainerSettings) -> dict[str, Any]:
    """A Kubernetes container spec: non-root, read-only, no capabilities, small."""
    env = [{"name": k, "value": v} for k, v in sorted(sidecar.env.items())]
    env += [{"name": setting, "value": f"{SECRET_MOUNT_ROOT}/{key}"}
            for setting, key in sorted(sidecar.secret_files.items())]
    ports: dict[str, Any] = {}
    if sidecar.metrics_port:
        prefix = sidecar.socket_setting.removesuffix("SOCKET")
        env.append({"name": f"{prefix}METRICS_PORT", "value": str(sidecar.metrics_port)})
        ports = {"ports": [{"name": "metrics", "containerPort": sidecar.metrics_port,
                            "protocol": "TCP"}]}
    return {
        **ports,
        "name": sidecar.name,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "args": sidecar.args,
        "env": env,
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


def _mount_secrets(spec: Any, container: dict[str, Any], sidecar: Sidecar, plan: SidecarPlan,
                   server_secret: str) -> None:
    """A volume of just this container's keys (from the server's Secret and operators'
    Secrets), mounted into this container only."""
    own: list[dict[str, str]] = []
    sources: list[dict[str, Any]] = []
    for key in sorted(set(sidecar.secret_files.values())):
        if key in plan.secret_refs:
            name, their_key = plan.secret_refs[key]
            sources.append({"secret": {"name": name,
                                       "items": [{"key": their_key, "path": key}]}})
        else:
            own.append({"key": key, "path": key})
    if own:
        sources.insert(0, {"secret": {"name": server_secret, "items": own}})
    volume = SECRETS_VOLUME.format(container=sidecar.name)
    # Readable inside this container only (no other container mounts it): 0440 would need
    # the container's gid to own the files, which kubelet gives Secret files only with fsGroup.
    _list(spec, "volumes").append({"name": volume, "projected": {"sources": sources,
                                                                 "defaultMode": 0o444}})
    container.setdefault("volumeMounts", []).append(
        {"name": volume, "mountPath": SECRET_MOUNT_ROOT, "readOnly": True})


def _token_from_secret(env: list[Any], server_secret: str) -> None:
    """The notebook's own JupyterHub token, by reference instead of by value."""
    for index, entry in enumerate(env):
        if _get(entry, "name") in NOTEBOOK_TOKEN_ENVS:
            env[index] = {"name": _get(entry, "name"), "valueFrom": {"secretKeyRef": {
                "name": server_secret, "key": NOTEBOOK_TOKEN_KEY}}}


def _mount_lxcfs(spec: Any, notebook: Any, lxcfs: Lxcfs) -> None:
    """Each LXCFS view over the notebook's own file (``/proc/meminfo``, …), read-only, from
    the node (deploy/lxcfs). One hostPath volume per file, ``type: File``: a node without
    LXCFS fails the pod's start with a clear event instead of hiding the limits."""
    volumes, mounts = _list(spec, "volumes"), _list(notebook, "volume_mounts")
    for name in lxcfs.files:
        volume = "lxcfs-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        volumes.append({"name": volume,
                        "hostPath": {"path": f"{lxcfs.root}/{name}", "type": "File"}})
        mounts.append({"name": volume, "mountPath": f"/{name}", "readOnly": True})


def _share_dir(spec: Any, path: str, users: list[Any]) -> None:
    """An in-memory emptyDir at ``path`` in the notebook and the sidecar containers."""
    _list(spec, "volumes").append({"name": SHARED_VOLUME,
                                   "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    for container in users:
        _list(container, "volume_mounts").append({"name": SHARED_VOLUME, "mountPath": path})


def _as_the_user(pod: Any, notebook: Any, session: UserSession) -> None:
    identity = session.identity
    spec = pod.spec
    context = _context(notebook)
    context.update({"runAsUser": identity.uid, "runAsGroup": identity.gid,
                    "runAsNonRoot": True, "allowPrivilegeEscalation": False})
    _set(notebook, "security_context", context)
    pod_context = _pod_context(spec)
    pod_context["supplementalGroups"] = sorted(set(identity.gids))
    pod_context.pop("fsGroup", None)
    pod_context.pop("fsGroupChangePolicy", None)
    spec.security_context = pod_context
    env = _list(notebook, "env")
    env.append({"name": "NB_UID", "value": str(identity.uid)})
    env.append({"name": "NB_GID", "value": str(identity.gid)})
    env.append({"name": "NB_USER", "value": identity.username})
    if session.home:
        env.append({"name": "HOME", "value": session.home})
    mounts = _list(notebook, "volume_mounts")
    volumes = _list(spec, "volumes")
    if session.storage is not None:
        volumes.extend(session.storage.pod_volumes(identity))
        mounts.extend(folder.volume_mount(folder.path) for folder in session.folders)
    # passwd and group with the user's names, from the notebook image's own files.
    volumes.append({"name": NSS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    mounts.append({"name": NSS_VOLUME, "mountPath": "/etc/passwd", "subPath": "passwd",
                   "readOnly": True})
    mounts.append({"name": NSS_VOLUME, "mountPath": "/etc/group", "subPath": "group",
                   "readOnly": True})
    init = {
        "name": "sidecars-nss",
        "image": _get(notebook, "image"),
        "imagePullPolicy": _get(notebook, "image_pull_policy") or "IfNotPresent",
        "command": ["/bin/sh", "-c", MERGE_SCRIPT],
        "env": [{"name": k, "value": v} for k, v in sorted(session.nss.env(identity).items())],
        "securityContext": {"runAsUser": identity.uid, "runAsGroup": identity.gid,
                            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"memory": "64Mi"}},
        "volumeMounts": [{"name": NSS_VOLUME, "mountPath": NSS_DIR}],
    }
    _list(spec, "init_containers").insert(0, init)


# -- V1 objects and plain dicts alike ---------------------------------------------------------

_CAMEL = {"volume_mounts": "volumeMounts", "security_context": "securityContext",
          "init_containers": "initContainers", "image_pull_policy": "imagePullPolicy"}


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(_CAMEL.get(key, key))
    return getattr(obj, key, None)


def _set(obj: Any, key: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[_CAMEL.get(key, key)] = value
    else:
        setattr(obj, key, value)


def _list(obj: Any, key: str) -> list[Any]:
    value = _get(obj, key)
    if value is None:
        value = []
        _set(obj, key, value)
    return value  # type: ignore[no-any-return]


def _context(container: Any) -> dict[str, Any]:
    """The container's securityContext as a camelCase dict (whatever KubeSpawner made)."""
    return _as_dict(_get(container, "security_context"))


def _pod_context(spec: Any) -> dict[str, Any]:
    return _as_dict(spec.security_context)


def _as_dict(value: Any) -> dict[str, Any]:
    """A kubernetes_asyncio model (or a dict) as a dict with the API's field names."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    fields: dict[str, str] = value.attribute_map
    return {api: getattr(value, attr) for attr, api in fields.items()
            if getattr(value, attr) is not None}
