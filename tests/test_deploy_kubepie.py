"""deploy/kubepie: valid Kubernetes objects, least privilege, and wired to the real code
(setting names, labels, ports, the storage file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.network_policy import PodRef, ingress_allowed
from harness.tools import REPO, manifests
from services.kubepie.gateway.backends.podspec import APP_LABEL
from services.kubepie.gateway.settings import GatewaySettings
from services.kubepie.webhook.settings import WebhookSettings
from services.runtime.settings import env_name
from services.storage.definition import StorageDefinition

FOLDER = REPO / "deploy" / "kubepie"
CRD_KINDS = {"Issuer", "Certificate"}  # cert-manager's; not in the Kubernetes schemas


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def every() -> list[dict[str, Any]]:
    return [d for p in manifests(FOLDER.glob("*.yaml")) for d in documents(p)]


def find(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in every() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("version", ["1.25", "1.30", "1.34"])
@pytest.mark.parametrize("path", manifests(FOLDER.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_validate_against_kubernetes(path: Path, version: str) -> None:
    for doc in documents(path):
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "cert-manager.io/v1"
            continue
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_a_mistake() -> None:
    webhook = find("MutatingWebhookConfiguration", "kubepie-fileserver-identity")
    webhook["webhooks"][0]["sideEffect"] = "None"  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(webhook, "1.30", strict=True)


def test_rbac_stays_in_the_namespace_and_covers_what_the_gateway_calls() -> None:
    kinds = {d["kind"] for d in every()}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    rules = find("Role", "kubepie-gateway")["rules"]
    by_resource = {r["resources"][0]: set(r["verbs"]) for r in rules}
    assert by_resource == {"pods": {"get", "list", "watch", "create", "delete", "patch"},
                           "secrets": {"get", "list", "create", "delete", "patch"},
                           "deployments": {"get"}}
    assert next(r for r in rules if r["resources"] == ["deployments"])["resourceNames"] == \
        ["kubepie-gateway"]
    gateway = find("Deployment", "kubepie-gateway")["spec"]["template"]["spec"]
    assert gateway["serviceAccountName"] == "kubepie-gateway"
    webhook = find("Deployment", "kubepie-webhook")["spec"]["template"]["spec"]
    assert webhook["automountServiceAccountToken"] is False


def test_file_servers_accept_only_the_gateway_and_the_nginx_front() -> None:
    """Judged with NetworkPolicy's own semantics (harness/network_policy.py) against the
    pods' real labels: the gateway and nginx pods labelled for file access (auth_request
    mode streams to file servers directly) get in; nothing else does."""
    policies = [d for d in every() if d["kind"] == "NetworkPolicy"]
    policy = find("NetworkPolicy", "kubepie-fileserver")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": APP_LABEL}
    port = GatewaySettings.model_fields["pod_port"].default
    server = PodRef("kubepie", {"app.kubernetes.io/name": APP_LABEL,
                                "app.kubernetes.io/part-of": "kubepie"})
    gateway = PodRef("kubepie", find("Deployment", "kubepie-gateway")["spec"]["template"][
        "metadata"]["labels"])
    nginx = PodRef("kubepie", {"app": "files-nginx", "kubepie.io/file-access": "true"})
    assert ingress_allowed(policies, server, gateway, port)
    assert ingress_allowed(policies, server, nginx, port)
    assert not ingress_allowed(policies, server, gateway, port + 1)
    assert not ingress_allowed(policies, server, PodRef("kubepie", {"app": "other"}), port)
    assert not ingress_allowed(policies, server, PodRef("kubepie", {}), port)
    # The label in another namespace (a user's notebook setting it on itself) does not count.
    assert not ingress_allowed(policies, server, PodRef("jhub", nginx.labels), port)
    assert not ingress_allowed(policies, server, PodRef("jhub", gateway.labels), port)
    assert policy["egress"] == [] and "Egress" in policy["policyTypes"]


def test_the_policy_judge_follows_the_api_semantics() -> None:
    rule = {"metadata": {"namespace": "a"}, "spec": {
        "podSelector": {}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}},
                               "podSelector": {"matchExpressions": [
                                   {"key": "role", "operator": "In", "values": ["web"]}]}}]}]}}
    target = PodRef("a", {"any": "thing"})
    labels = {"b": {"team": "x"}, "c": {"team": "y"}}
    assert ingress_allowed([rule], target, PodRef("b", {"role": "web"}), 80, labels)
    assert not ingress_allowed([rule], target, PodRef("c", {"role": "web"}), 80, labels)
    assert not ingress_allowed([rule], target, PodRef("b", {"role": "db"}), 80, labels)
    assert ingress_allowed([], target, PodRef("z", {}), 1)  # no policy: not isolated
    deny_all = {"metadata": {"namespace": "a"}, "spec": {"podSelector": {},
                                                         "policyTypes": ["Ingress"]}}
    assert not ingress_allowed([deny_all], target, PodRef("a", {}), 80)


def test_the_webhook_sees_every_file_server_pod_and_fails_closed() -> None:
    config = find("MutatingWebhookConfiguration", "kubepie-fileserver-identity")
    [hook] = config["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["admissionReviewVersions"] == ["v1"]
    assert hook["objectSelector"]["matchLabels"] == {"app.kubernetes.io/name": APP_LABEL}
    assert hook["rules"][0]["operations"] == ["CREATE"] and hook["rules"][0]["resources"] == \
        ["pods"]
    assert hook["clientConfig"]["service"]["path"] == "/mutate"
    certificate = find("Certificate", "kubepie-webhook")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"kubepie/{certificate['metadata']['name']}"
    assert "kubepie-webhook.kubepie.svc" in certificate["spec"]["dnsNames"]


@pytest.mark.parametrize(("deployment", "model"), [("kubepie-gateway", GatewaySettings),
                                                   ("kubepie-webhook", WebhookSettings)])
def test_env_names_are_real_settings(deployment: str, model: Any) -> None:
    [container] = find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    known = {env_name(model, name) for name in model.model_fields}
    for item in container["env"]:
        assert item["name"] in known, item["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_storage_config_map_is_the_hubs_storage_definition() -> None:
    """One definition: what the notebook mounts is what the user's file server serves."""
    text = find("ConfigMap", "kubepie-storage")["data"]["storage.yaml"]
    document = yaml.safe_load(text)
    storage = StorageDefinition.parse(document)
    assert [m["name"] for m in storage.mounts] == ["home", "data"]
    values = yaml.safe_load((REPO / "deploy/jupyterhub/values.yaml").read_text())
    sidecars = values["hub"]["config"]["Sidecars"]
    assert sidecars["storage"] == document
    assert sidecars["identity_from_claims"] is True
