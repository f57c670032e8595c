"""deploy/metrics: valid Kubernetes objects, least privilege, and wired to the real settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.tools import REPO, manifests
from services.metrics.settings import DEFAULT_PORT, AgentSettings
from services.runtime.settings import env_name

FOLDER = REPO / "deploy" / "metrics"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def objects() -> dict[str, dict[str, Any]]:
    found = {}
    for path in manifests(FOLDER.rglob("*.yaml")):
        for doc in documents(path):
            found[doc["kind"]] = doc
    return found


@pytest.mark.parametrize("version", ["1.25", "1.30", "1.34"])
@pytest.mark.parametrize("path", manifests(FOLDER.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_validate_against_kubernetes(path: Path, version: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_a_mistake() -> None:
    daemonset = objects()["DaemonSet"]
    daemonset["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, "1.30", strict=True)


def test_rbac_is_get_list_watch_pods_only_in_one_namespace() -> None:
    found = objects()
    assert "ClusterRole" not in found and "ClusterRoleBinding" not in found
    assert found["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = found["RoleBinding"]
    assert binding["roleRef"]["name"] == found["Role"]["metadata"]["name"]
    account = found["ServiceAccount"]["metadata"]
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": account["name"],
                                      "namespace": account["namespace"]}
    pod = found["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    # The Role is in JupyterHub's namespace, the one the agent watches; the agent in its own.
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert found["Role"]["metadata"]["namespace"] == binding["metadata"]["namespace"] == \
        env["METRICS_NAMESPACE"]
    assert found["DaemonSet"]["metadata"]["namespace"] == account["namespace"] == \
        found["Namespace"]["metadata"]["name"] == found["Service"]["metadata"]["namespace"] \
        == found["ServiceMonitor"]["metadata"]["namespace"]


def test_the_agent_can_be_admitted_where_it_is_applied() -> None:
    """Pod Security Admission: hostPath and hostPID are refused below "privileged"; a
    priorityClassName of system-node-critical is refused outside kube-system where the
    cluster quotas it (GKE). The agent's own namespace carries the label; none is set."""
    found = objects()
    labels = found["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    pod = found["DaemonSet"]["spec"]["template"]["spec"]
    assert "priorityClassName" not in pod
    assert found["Namespace"]["metadata"]["name"] != "jhub"  # never the users' namespace
    # A failing /healthz (containers not found) must not restart the agent in a loop.
    agent = pod["containers"][0]
    assert "tcpSocket" in agent["livenessProbe"] and \
        agent["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_agent_runs_unprivileged_with_read_only_host_mounts() -> None:
    pod = objects()["DaemonSet"]["spec"]["template"]["spec"]
    [agent] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert agent["securityContext"] == {"allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
    assert all(m["readOnly"] for m in agent["volumeMounts"])
    assert "privileged" not in str(pod)
    assert pod["hostPID"] is True  # NVML reports host PIDs


def test_agent_environment_names_real_settings_and_valid_values() -> None:
    [agent] = objects()["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    assert agent["args"] == ["metrics"]
    known = {env_name(AgentSettings, f) for f in AgentSettings.model_fields}
    ours = {e["name"]: e for e in agent["env"] if e["name"].startswith("METRICS_")}
    assert set(ours) <= known, set(ours) - known
    values = {name: e.get("value", "from-downward-api") for name, e in ours.items()}
    settings = AgentSettings.model_validate({k[len("METRICS_"):].lower(): v
                                             for k, v in values.items()})
    assert settings.resolved_source() == "kubernetes"
    assert settings.port == DEFAULT_PORT
    assert ours["METRICS_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert settings.cgroup_root == agent["volumeMounts"][0]["mountPath"]


def test_service_and_scrape_configuration_point_at_the_agent() -> None:
    found = objects()
    daemonset, service = found["DaemonSet"], found["Service"]
    template = daemonset["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    port = template["spec"]["containers"][0]["ports"][0]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    [monitor] = documents(FOLDER / "operator" / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # keep user/pod labels
