"""deploy/lxcfs: valid Kubernetes objects that give the hooks what c.Sidecars.lxcfs names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.tools import REPO, manifests
from services.hub.plan import LXCFS_FILES

FOLDER = REPO / "deploy" / "lxcfs"


def objects() -> dict[str, dict[str, Any]]:
    found = {}
    for path in manifests(FOLDER.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


@pytest.mark.parametrize("version", ["1.25", "1.30", "1.34"])
def test_manifests_validate_against_kubernetes(version: str) -> None:
    for doc in objects().values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_lxcfs_mounts_where_the_hooks_look_and_reaches_the_node() -> None:
    daemonset = objects()["DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][-1] == "/var/lib/lxcfs"  # the value docs/configuration.md gives
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/lxcfs")
    assert mount["mountPropagation"] == "Bidirectional"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["hostPath"]["path"] == "/var/lib/lxcfs"
    assert pod["hostPID"] is True and container["securityContext"]["privileged"] is True
    # Pod Security Admission refuses this pod anywhere but a privileged namespace.
    namespace = objects()["Namespace"]
    assert daemonset["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == \
        "privileged"
    assert daemonset["spec"]["updateStrategy"]["type"] == "OnDelete"


def test_the_image_runs_what_the_daemonset_runs() -> None:
    dockerfile = (REPO / "deploy" / "images" / "lxcfs.Dockerfile").read_text()
    assert 'ENTRYPOINT ["lxcfs"]' in dockerfile
    assert '"--foreground"' in dockerfile and "/var/lib/lxcfs" in dockerfile
    assert all(not Path(f).is_absolute() for f in LXCFS_FILES)
