"""Every Secret and ConfigMap a manifest mounts is readable by the process that reads it
(judged by harness/volume_access.py with kubelet's rules).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.tools import REPO, manifests
from harness.volume_access import problems


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in manifests((REPO / "deploy").rglob("*.yaml")):
        if "jupyterhub" in path.parts or "overlays" in path.parts:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
                yield f"{path.relative_to(REPO)}:{doc['metadata']['name']}", \
                    doc["spec"]["template"]["spec"]


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
