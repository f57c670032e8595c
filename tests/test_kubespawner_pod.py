"""The walltime container in a real KubeSpawner pod manifest, validated against Kubernetes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from traitlets.config import Config

from services.hub.hooks import (
    PLAN_ATTRIBUTE,
    add_walltime,
    describe_for_metrics,
    modify_pod_hook,
)
from services.hub.plan import SidecarPlan
from services.metrics.pods import pod_info

TOKEN = "0123456789abcdef0123456789abcdef"

# KubeSpawner loads a kube config when created; this one points nowhere and is never used.
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: jhub}}]
current-context: none
"""


@pytest.fixture(autouse=True)
def kubeconfig(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path_factory.getbasetemp() / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


STARTED = datetime(2026, 11, 22, 10, 0, 0)  # the hub's database keeps naive UTC


async def manifest(**spawner_config: Any) -> dict[str, Any]:
    config = Config({"KubeSpawner": spawner_config,
                     "Sidecars": {"image": "example.org/sidecars:1.2.3"}})
    spawner = KubeSpawner(_mock=True, config=config)
    plan = SidecarPlan()
    add_walltime(plan, api_url="http://hub:8081/hub/api", user="alice", server_name="gpu",
                 limit=1800, warn="10m,1m", token=TOKEN, port=8765)
    describe_for_metrics(plan, {"display_name": "A100 10G", "slug": "a100-10g"}, 1800,
                         STARTED)
    setattr(spawner, PLAN_ATTRIBUTE, plan)
    pod = modify_pod_hook(spawner, await spawner.get_pod_manifest())
    async with ApiClient() as api:
        return dict(api.sanitize_for_serialization(pod))


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


@pytest.mark.parametrize("version", ["1.25", "1.30", "1.34"])
async def test_pod_validates_against_kubernetes(version: str) -> None:
    pod = await manifest()
    kubernetes_validate.validate(pod, version, strict=True)


async def test_pod_tells_the_metrics_agent_its_profile_and_walltime() -> None:
    """The hook's annotations are exactly what the node agent reads back."""
    pod = await manifest()
    annotations = pod["metadata"]["annotations"]
    assert annotations["jupyterhub-sidecars/profile"] == "a100-10g"
    assert annotations["jupyterhub-sidecars/walltime-limit-seconds"] == "1800"
    pod["metadata"]["uid"] = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"
    info = pod_info(pod, {})
    assert info is not None
    # KubeSpawner's mock user, unescaped (the label has the escaped "mock-40name")
    assert (info.user, info.server, info.profile) == ("mock@name", "", "a100-10g")
    assert info.walltime_limit_seconds == 1800
    assert info.walltime_deadline == datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    notebook = containers(pod)["notebook"]
    assert {"name": "JUPYTERHUB_SIDECARS_PROFILE", "value": "a100-10g"} in notebook["env"]


async def test_walltime_container_is_locked_down_and_alone_with_the_token() -> None:
    pod = await manifest()
    walltime = containers(pod)["walltime"]
    env = {e["name"]: e["value"] for e in walltime["env"]}
    assert env == {
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api", "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVER_NAME": "gpu", "WALLTIME_API_TOKEN": TOKEN, "WALLTIME_LIMIT": "1800",
        "WALLTIME_WARN": "600,60", "WALLTIME_PORT": "8765",
    }
    assert walltime["image"] == "example.org/sidecars:1.2.3"
    assert walltime["args"] == ["walltime"]
    assert walltime["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65534, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert walltime["resources"]["limits"]["memory"] == "128Mi"

    notebook = containers(pod)["notebook"]
    assert TOKEN not in str(notebook)
    notebook_env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert notebook_env["JUPYTERHUB_SIDECARS_WALLTIME_URL"] == "http://127.0.0.1:8765"


async def test_a_profiles_extra_containers_do_not_drop_the_sidecar() -> None:
    pod = await manifest(extra_containers=[{"name": "gpu-exporter", "image": "busybox:1"}])
    assert set(containers(pod)) == {"notebook", "gpu-exporter", "walltime"}


async def test_a_clashing_container_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="already has a container named 'walltime'"):
        await manifest(extra_containers=[{"name": "walltime", "image": "busybox:1"}])


async def test_tokenhelper_shares_an_in_memory_folder_and_runs_as_the_notebook_uid() -> None:
    from services.hub.hooks import add_tokenhelper_sidecar

    config = Config({"KubeSpawner": {"uid": 1000},
                     "Sidecars": {"image": "example.org/sidecars:1.2.3"}})
    spawner = KubeSpawner(_mock=True, config=config)
    plan = SidecarPlan()
    add_walltime(plan, api_url="http://hub:8081/hub/api", user="alice", server_name="",
                 limit=1800, warn="10m", token=TOKEN, port=8765)
    add_tokenhelper_sidecar(
        plan, api_url="http://hub:8081/hub/api", user="alice", token="HELPER-TOKEN",
        issuer="https://idp.example.org/realms/facility", client_id="jupyterhub",
        client_secret="CLIENT-SECRET", run_dir="/run/sidecars", uid=1000, port=8767,
        min_valid="60s", write_back=False)
    setattr(spawner, PLAN_ATTRIBUTE, plan)
    pod = modify_pod_hook(spawner, await spawner.get_pod_manifest())
    async with ApiClient() as api:
        manifest = dict(api.sanitize_for_serialization(pod))
    kubernetes_validate.validate(manifest, "1.30", strict=True)

    by_name = containers(manifest)
    helper, notebook = by_name["tokenhelper"], by_name["notebook"]
    assert helper["securityContext"]["runAsUser"] == 1000
    assert by_name["walltime"]["securityContext"]["runAsUser"] == 65534
    volume = next(v for v in manifest["spec"]["volumes"] if v["name"] == "sidecars-run")
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    for container in (helper, notebook):
        assert {"name": "sidecars-run", "mountPath": "/run/sidecars"} in \
            container["volumeMounts"]
    assert not any(m["name"] == "sidecars-run"
                   for m in by_name["walltime"].get("volumeMounts") or [])
    notebook_env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert notebook_env["BEARER_TOKEN_FILE"] == "/run/sidecars/bt_u1000"
    for secret in ("HELPER-TOKEN", "CLIENT-SECRET", TOKEN):
        assert secret not in str(notebook)
