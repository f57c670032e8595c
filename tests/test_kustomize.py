"""deploy/kubepie, deploy/metrics and deploy/lxcfs as kustomize bases, and the example overlay
on top, rendered by the real ``kubectl kustomize`` and validated strictly against the
Kubernetes 1.25, 1.30 and 1.34 schemas; the overlay's changes land where operators expect."""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.tools import REPO, manifests, require_tool
from services.storage.definition import StorageDefinition

DEPLOY = REPO / "deploy"
BASES = ["kubepie", "metrics", "metrics/operator", "lxcfs"]
CRDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate"),
        ("monitoring.coreos.com/v1", "ServiceMonitor")}  # not in the Kubernetes schemas
OVERLAY = DEPLOY / "overlays" / "example"


@cache
def render(folder: str) -> tuple[dict[str, Any], ...]:
    kubectl = require_tool("kubectl")
    result = subprocess.run([kubectl, "kustomize", str(DEPLOY / folder)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def files_of(folder: str) -> list[dict[str, Any]]:
    return [d for p in manifests((DEPLOY / folder).glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]


@pytest.mark.parametrize("folder", BASES)
def test_each_base_renders_exactly_its_files(folder: str) -> None:
    rendered = {key(d): d for d in render(folder)}
    plain = {key(d): d for d in files_of(folder)}
    assert rendered.keys() == plain.keys()
    for name, doc in plain.items():
        assert rendered[name] == doc, name  # kustomize adds and changes nothing


@pytest.mark.parametrize("version", ["1.25", "1.30", "1.34"])
@pytest.mark.parametrize("folder", [*BASES, "overlays/example"])
def test_rendered_objects_validate_against_kubernetes(folder: str, version: str) -> None:
    for doc in render(folder):
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)


def find(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in render("overlays/example")
                if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_overlay_sets_the_sites_images_hosts_storage_and_hub_namespace() -> None:
    docs = render("overlays/example")
    images = [c["image"] for d in docs if d["kind"] in ("Deployment", "DaemonSet")
              for c in d["spec"]["template"]["spec"]["containers"]]
    assert images and all(i.startswith("registry.example.edu/jupyterhub/") for i in images)
    assert "registry.example.edu/jupyterhub/sidecars:0.1.0-site1" in images
    text = yaml.safe_dump_all(docs)
    assert "example.org" not in text  # every base host name was replaced
    gateway = find("Deployment", "kubepie-gateway")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    assert env["KUBEPIE_PUBLIC_URL"] == "https://files.physics.example.edu"
    assert env["KUBEPIE_POD_IMAGE"] == "registry.example.edu/jupyterhub/fileserver:0.1.0-site1"
    assert env["KUBEPIE_IDLE_TIMEOUT"] == "15m"  # the base's other settings stay
    ingress = find("Ingress", "kubepie")["spec"]
    assert ingress["rules"][0]["host"] == ingress["tls"][0]["hosts"][0] == \
        "files.physics.example.edu"
    storage = find("ConfigMap", "kubepie-storage")
    assert storage["metadata"]["name"] == "kubepie-storage"  # no hash suffix: it is mounted
    assert storage["data"]["storage.yaml"] == (OVERLAY / "storage.yaml").read_text()
    StorageDefinition.parse(yaml.safe_load(storage["data"]["storage.yaml"]), "overlay")
    for kind in ("Role", "RoleBinding"):
        assert find(kind, "jupyterhub-sidecars-metrics")["metadata"]["namespace"] == \
            "jupyterhub"
    agent = find("DaemonSet", "jupyterhub-sidecars-metrics")["spec"]["template"]["spec"]
    agent_env = {e["name"]: e.get("value") for e in agent["containers"][0]["env"]}
    assert agent_env["METRICS_NAMESPACE"] == "jupyterhub"
    binding = find("RoleBinding", "jupyterhub-sidecars-metrics")
    assert binding["subjects"][0]["namespace"] == "jupyterhub-sidecars-metrics"
