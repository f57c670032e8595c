"""The Pod of one user's file server, built from the identity and the operator's storage file.

Storage file (``KUBEPIE_POD_STORAGE_FILE``, YAML; ``{username}``, ``{uid}``, ``{gid}`` and, in
``groupMounts``, ``{group}`` are filled in)::

    volumes:                      # pod volumes, exactly as in a Pod spec
      - name: homes
        persistentVolumeClaim: {claimName: homes}
      - name: groups
        nfs: {server: nfs.example.org, path: /export/groups}
    mounts:                       # served at /<name>/
      - {name: home, volume: homes, subPath: "{username}"}
      - {name: data, volume: homes, subPath: shared, readOnly: true}
    groupMounts:                  # one per mapped group, served at /groups/<group>/
      {volume: groups, subPath: "{group}"}
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.identity.claims import Identity

APP_LABEL = "kubepie-fileserver"
MANAGED_BY = "kubepie-gateway"
USER_LABEL = "kubepie.io/user"
LAST_USED = "kubepie.io/last-used"
SELECTOR = f"app.kubernetes.io/name={APP_LABEL},app.kubernetes.io/managed-by={MANAGED_BY}"
MOUNT_ROOT = "/srv/kubepie"
FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Storage:
    volumes: tuple[dict[str, Any], ...]
    mounts: tuple[dict[str, Any], ...]
    group_mount: dict[str, Any] | None

    @classmethod
    def load(cls, path: Path) -> Storage:
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not isinstance(document, dict):
            raise ValueError(f"{path}: expected a mapping with volumes, mounts, groupMounts")
        return cls.parse(document, str(path))

    @classmethod
    def parse(cls, document: dict[str, Any], where: str = "storage") -> Storage:
        unknown = set(document) - {"volumes", "mounts", "groupMounts"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        volumes = tuple(document.get("volumes") or [])
        names = {v.get("name") for v in volumes if isinstance(v, dict)}
        if len(names) != len(volumes) or None in names:
            raise ValueError(f"{where}: every volume needs a distinct name")
        mounts = tuple(document.get("mounts") or [])
        group = document.get("groupMounts")
        for mount in (*mounts, *([group] if group else [])):
            if not isinstance(mount, dict) or mount.get("volume") not in names:
                raise ValueError(f"{where}: mount {mount!r} names no volume of 'volumes'")
            extra = set(mount) - {"name", "volume", "subPath", "readOnly"}
            if extra:
                raise ValueError(f"{where}: mount {mount!r}: unknown key {sorted(extra)[0]!r}")
        for mount in mounts:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", str(mount.get("name", ""))):
                raise ValueError(f"{where}: mount {mount!r} needs a name like home or data")
        if not mounts and not group:
            raise ValueError(f"{where}: give at least one mount")
        return cls(volumes, mounts, group)

    def expand(self, identity: Identity) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                  list[tuple[str, str, bool]]]:
        """Pod volumes, container volumeMounts and (fileserver name, path, read-only)."""
        values = {"username": identity.username, "uid": str(identity.uid),
                  "gid": str(identity.gid)}
        volumes = [_fill(v, values) for v in self.volumes]
        wanted = [(str(m["name"]), m, values) for m in self.mounts]
        if self.group_mount:
            wanted += [(f"group-{g}", self.group_mount, {**values, "group": g})
                       for g in identity.groups]
        mounts, served = [], []
        for name, mount, fill in wanted:
            path = f"{MOUNT_ROOT}/{name}"
            entry: dict[str, Any] = {"name": mount["volume"], "mountPath": path}
            if mount.get("subPath"):
                entry["subPath"] = _fill(str(mount["subPath"]), fill)
            read_only = bool(mount.get("readOnly", False))
            if read_only:
                entry["readOnly"] = True
            mounts.append(entry)
            served.append((name, path, read_only))
        return volumes, mounts, served


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def pod_name(identity: Identity) -> str:
    """Stable per identity (so replicas agree and creation is idempotent), DNS-safe."""
    digest = hashlib.sha256(repr(sorted(identity.as_claims().items())).encode()).hexdigest()
    safe = re.sub(r"[^a-z0-9-]", "-", identity.username)[:40].strip("-") or "user"
    return f"kubepie-{safe}-{digest[:10]}"


@dataclass(frozen=True)
class PodSettings:
    namespace: str
    image: str
    image_pull_policy: str = "IfNotPresent"
    port: int = 8770
    cpu_request: str = "50m"
    memory_request: str = "128Mi"
    memory_limit: str = "512Mi"
    service_account: str | None = None


def build_pod(identity: Identity, *, name: str, settings: PodSettings, storage: Storage,
              token: str, signed_identity: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    volumes, volume_mounts, served = storage.expand(identity)
    env = [
        {"name": "FILESERVER_MOUNTS", "value": ",".join(f"{n}={p}" for n, p, _ in served)},
        {"name": "FILESERVER_READ_ONLY", "value": ",".join(n for n, _, ro in served if ro)},
        {"name": "FILESERVER_HOST", "value": "0.0.0.0"},
        {"name": "FILESERVER_PORT", "value": str(settings.port)},
        {"name": "FILESERVER_ACCESS_TOKEN", "value": token},
    ]
    metadata: dict[str, Any] = {
        "name": name, "namespace": settings.namespace,
        "labels": {"app.kubernetes.io/name": APP_LABEL, "app.kubernetes.io/part-of": "kubepie",
                   "app.kubernetes.io/managed-by": MANAGED_BY, USER_LABEL: _label(identity)},
        "annotations": {"kubepie.io/identity": signed_identity,
                        LAST_USED: str(int(time.time()))},
    }
    if owner:
        metadata["ownerReferences"] = [owner]
    container = {
        "name": "fileserver", "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy, "env": env,
        "ports": [{"name": "webdav", "containerPort": settings.port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "webdav"},
                           "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "webdav"},
                          "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
        "resources": {"requests": {"cpu": settings.cpu_request,
                                   "memory": settings.memory_request},
                      "limits": {"memory": settings.memory_limit}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [*volume_mounts, {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # a dead server is replaced by the gateway, fresh
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsUser": identity.uid, "runAsGroup": identity.gid,
                            "supplementalGroups": list(identity.gids), "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        "terminationGracePeriodSeconds": 30,
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _label(identity: Identity) -> str:
    """Label values allow [a-z0-9A-Z._-], 63 characters: usernames here always fit."""
    return identity.username[:63].strip("._-") or "user"


def is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return status.get("phase") == "Running" and ready and bool(status.get("podIP"))


def is_finished(pod: Mapping[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Failed", "Succeeded") or bool(
        (pod.get("metadata") or {}).get("deletionTimestamp"))
