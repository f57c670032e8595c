"""The Pod of one user's file server, built from the identity and the storage definition
(``KUBEPIE_STORAGE_FILE``: the same document the hub mounts the notebook's folders from,
services/storage/definition.py). Each folder is mounted at ``/srv/kubepie/<name>`` and served
at ``/<name>/`` (groups at ``/groups/<group>/``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.identity.claims import Identity
from services.storage.definition import StorageDefinition

APP_LABEL = "kubepie-fileserver"
MANAGED_BY = "kubepie-gateway"
USER_LABEL = "kubepie.io/user"
LAST_USED = "kubepie.io/last-used"
SELECTOR = f"app.kubernetes.io/name={APP_LABEL},app.kubernetes.io/managed-by={MANAGED_BY}"
MOUNT_ROOT = "/srv/kubepie"
TOKEN_DIR = "/etc/kubepie"  # noqa: S105 - a folder: the pod's token file, from its own Secret
TOKEN_KEY = "token"  # noqa: S105 - the key's name


def token_secret_name(pod: str) -> str:
    return f"{pod}-token"


def token_secret(pod: dict[str, Any], token: str) -> dict[str, Any]:
    """The file server's access token as a Secret owned by its pod: never in the pod spec
    (anyone who may get pods reads that), gone with the pod."""
    meta = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": token_secret_name(meta["name"]),
                         "namespace": meta["namespace"],
                         "labels": {"app.kubernetes.io/managed-by": MANAGED_BY,
                                    "app.kubernetes.io/part-of": "kubepie"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                                              "name": meta["name"], "uid": meta["uid"],
                                              "blockOwnerDeletion": True}]},
            "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()}}


def served_folders(storage: StorageDefinition, identity: Identity
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                              list[tuple[str, str, bool]]]:
    """Pod volumes, container volumeMounts and (file server name, path, read-only)."""
    folders = storage.folders(identity)
    mounts = [f.volume_mount(f"{MOUNT_ROOT}/{f.name}") for f in folders]
    served = [(f.name, f"{MOUNT_ROOT}/{f.name}", f.read_only) for f in folders]
    return storage.pod_volumes(identity), mounts, served


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
    processes: int = 1


def build_pod(identity: Identity, *, name: str, settings: PodSettings,
              storage: StorageDefinition, signed_identity: str,
              owner: dict[str, Any] | None) -> dict[str, Any]:
    volumes, volume_mounts, served = served_folders(storage, identity)
    env = [
        {"name": "FILESERVER_MOUNTS", "value": ",".join(f"{n}={p}" for n, p, _ in served)},
        {"name": "FILESERVER_READ_ONLY", "value": ",".join(n for n, _, ro in served if ro)},
        {"name": "FILESERVER_HOST", "value": "0.0.0.0"},
        {"name": "FILESERVER_PORT", "value": str(settings.port)},
        {"name": "FILESERVER_PROCESSES", "value": str(settings.processes)},
        {"name": "FILESERVER_ACCESS_TOKEN_FILE", "value": f"{TOKEN_DIR}/{TOKEN_KEY}"},
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
        "volumeMounts": [*volume_mounts, {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
                         {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True}],
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # a dead server is replaced by the gateway, fresh
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsUser": identity.uid, "runAsGroup": identity.gid,
                            "supplementalGroups": list(identity.gids), "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    # 0444: the container runs as the user, and no other container mounts it
                    {"name": "token", "secret": {"secretName": token_secret_name(name),
                                                 "defaultMode": 0o444}}],
        "terminationGracePeriodSeconds": 30,
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _label(identity: Identity) -> str:
    return label_value(identity.username)


def label_value(name: str) -> str:
    """A user name as a label value: at most 63 of [A-Za-z0-9._-], starting and ending with
    a letter or digit (``_alice.`` is a fine user name and an invalid label: 422). Not unique:
    readers of a label check the object's own record too."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:63].strip("._-") or "user"


def is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return status.get("phase") == "Running" and ready and bool(status.get("podIP"))


def is_finished(pod: Mapping[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Failed", "Succeeded") or bool(
        (pod.get("metadata") or {}).get("deletionTimestamp"))
