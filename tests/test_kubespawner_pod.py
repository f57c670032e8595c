"""The user's pod as a real KubeSpawner builds it after our hooks, validated against Kubernetes.

What a pod must never carry is the point of most of these tests: no credential string anywhere
in the manifest (anyone with ``get pods`` reads it — the metrics agent included), each
credential reachable by exactly one container, the notebook running as the user's identity.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from traitlets.config import Config

from harness.pod_plan import (
    CREDENTIALS,
    KUBECONFIG,
    NOTEBOOK_TOKEN,
    full_plan,
)
from services.contract import SECRET_MOUNT_ROOT
from services.hub.config import Sidecars
from services.hub.hooks import (
    PLAN_ATTRIBUTE,
    cpu_limit_of,
    modify_pod_hook,
    thread_env,
)
from services.hub.plan import SidecarPlan
from services.hub.pod import secret_manifest
from services.metrics.pods import pod_info


@pytest.fixture(autouse=True)
def kubeconfig(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path_factory.getbasetemp() / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


async def manifest(plan: SidecarPlan | None = None, **spawner_config: Any) -> dict[str, Any]:
    config = Config({"KubeSpawner": {"fs_gid": 100, "uid": 1000, **spawner_config},
                     "Sidecars": {"image": "example.org/sidecars:1.2.3"}})
    spawner = KubeSpawner(_mock=True, config=config)
    spawner.api_token = NOTEBOOK_TOKEN
    setattr(spawner, PLAN_ATTRIBUTE, plan or full_plan())
    pod = modify_pod_hook(spawner, await spawner.get_pod_manifest())
    async with ApiClient() as api:
        return dict(api.sanitize_for_serialization(pod))


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("version", ["1.25", "1.30", "1.34"])
async def test_pod_validates_against_kubernetes(version: str) -> None:
    pod = await manifest()
    kubernetes_validate.validate(pod, version, strict=True)


async def test_no_credential_appears_anywhere_in_the_pod() -> None:
    """Not in an env value, an annotation, an init container, anywhere."""
    text = json.dumps(await manifest())
    for credential in CREDENTIALS:
        assert credential not in text


async def test_each_credential_reaches_exactly_the_container_that_needs_it() -> None:
    pod = await manifest()
    by_name = containers(pod)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret_keys: dict[str, set[str]] = {}
    for name, container in by_name.items():
        for mount in container.get("volumeMounts") or []:
            projected = volumes[mount["name"]].get("projected")
            if projected:
                secret_keys.setdefault(name, set()).update(
                    item["path"] for source in projected["sources"]
                    for item in source["secret"]["items"])
    assert secret_keys == {"walltime": {"walltime-token"},
                           "tokenhelper": {"tokenhelper-token", "client-secret"}}
    assert env_of(by_name["walltime"])["WALLTIME_API_TOKEN_FILE"] == \
        f"{SECRET_MOUNT_ROOT}/walltime-token"
    assert env_of(by_name["tokenhelper"])["TOKENHELPER_CLIENT_SECRET_FILE"] == \
        f"{SECRET_MOUNT_ROOT}/client-secret"
    # The notebook's own JupyterHub token: by reference to the server's Secret.
    notebook = env_of(by_name["notebook"])
    for name in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
        assert notebook[name] == {"secretKeyRef": {"name": "jupyter-mock-name---6241db84-sidecars",
                                                   "key": "jupyterhub-api-token"}}
    assert not any(m["name"].startswith("sidecars-secrets")
                   for m in by_name["notebook"].get("volumeMounts") or [])


async def test_the_servers_secret_holds_them_and_belongs_to_the_pod() -> None:
    plan = full_plan()
    await manifest(plan)  # the pod hook adds the notebook's token to the plan
    pod = {"metadata": {"name": "jupyter-alice", "namespace": "jhub",
                        "uid": "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901",
                        "labels": {"hub.jupyter.org/username": "alice"}}}
    secret = secret_manifest(plan, "jupyter-alice-sidecars", pod)
    kubernetes_validate.validate(secret, "1.30", strict=True)
    assert set(secret["data"]) == {"walltime-token", "tokenhelper-token", "client-secret",
                                   "jupyterhub-api-token"}
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", "jupyter-alice",
                                                            pod["metadata"]["uid"])


async def test_an_operators_secret_is_referenced_not_copied() -> None:
    plan = full_plan()
    del plan.secrets["client-secret"]
    plan.secret_refs["client-secret"] = ("oidc-client", "secret")
    pod = await manifest(plan)
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "sidecars-secrets-tokenhelper"]
    sources = volume["projected"]["sources"]
    assert {"secret": {"name": "oidc-client", "items": [{"key": "secret",
                                                         "path": "client-secret"}]}} in sources


async def test_the_notebook_runs_as_the_users_identity() -> None:
    pod = await manifest()
    notebook = containers(pod)["notebook"]
    context = notebook["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == \
        (2101, 2101, True)
    assert context["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [5000]
    assert "fsGroup" not in pod["spec"]["securityContext"]  # Z2JH's fsGid 100 removed
    env = env_of(notebook)
    assert (env["HOME"], env["NB_USER"], env["NB_UID"]) == ("/home/alice", "alice", "2101")


async def test_passwd_and_group_come_from_an_init_container_in_the_notebook_image() -> None:
    pod = await manifest()
    notebook = containers(pod)["notebook"]
    [init] = pod["spec"]["initContainers"]
    assert init["image"] == notebook["image"]  # the image's own /etc/passwd is merged
    assert init["securityContext"]["runAsUser"] == 2101
    env = env_of(init)
    assert env["NSS_PASSWD"] == "alice:x:2101:2101:alice:/home/alice:/bin/bash"
    assert env["NSS_GROUP"] == "alice:x:2101:\nxray:x:5000:alice"
    mounts = {m["mountPath"]: m for m in notebook["volumeMounts"]}
    for name in ("passwd", "group"):
        assert mounts[f"/etc/{name}"] == {"name": "sidecars-nss", "mountPath": f"/etc/{name}",
                                         "subPath": name, "readOnly": True}


async def test_the_storage_definitions_folders_are_mounted_at_their_paths() -> None:
    pod = await manifest()
    notebook = containers(pod)["notebook"]
    mounts = {m["mountPath"]: m for m in notebook["volumeMounts"]}
    assert mounts["/home/alice"] == {"name": "homes", "mountPath": "/home/alice",
                                     "subPath": "alice"}
    assert mounts["/data"] == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert mounts["/groups/xray"] == {"name": "groups", "mountPath": "/groups/xray",
                                      "subPath": "xray"}
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    assert {"homes", "groups", "data"} <= volumes


async def test_without_an_identity_the_image_user_stays() -> None:
    pod = await manifest(full_plan(session=False))
    assert containers(pod)["notebook"]["securityContext"]["runAsUser"] == 1000
    assert "initContainers" not in pod["spec"] or not pod["spec"]["initContainers"]


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


async def test_sidecar_containers_are_locked_down() -> None:
    pod = await manifest()
    walltime = containers(pod)["walltime"]
    assert env_of(walltime) == {
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api", "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVER_NAME": "gpu", "WALLTIME_LIMIT": "1800", "WALLTIME_WARN": "600,60",
        "WALLTIME_PORT": "8765", "WALLTIME_API_TOKEN_FILE": f"{SECRET_MOUNT_ROOT}/walltime-token",
    }
    assert walltime["image"] == "example.org/sidecars:1.2.3"
    assert walltime["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65534, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert walltime["resources"]["limits"]["memory"] == "128Mi"
    helper = containers(pod)["tokenhelper"]
    assert helper["securityContext"]["runAsUser"] == 2101  # writes the user's token file
    assert env_of(containers(pod)["notebook"])["JUPYTERHUB_SIDECARS_WALLTIME_URL"] == \
        "http://127.0.0.1:8765"


async def test_the_run_folder_is_shared_by_notebook_and_tokenhelper_only() -> None:
    pod = await manifest()
    by_name = containers(pod)
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "sidecars-run")
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    for name in ("tokenhelper", "notebook"):
        assert {"name": "sidecars-run", "mountPath": "/run/sidecars"} in \
            by_name[name]["volumeMounts"]
    assert not any(m["name"] == "sidecars-run"
                   for m in by_name["walltime"].get("volumeMounts") or [])
    assert env_of(by_name["notebook"])["BEARER_TOKEN_FILE"] == "/run/sidecars/bt_u2101"


async def test_a_profiles_extra_containers_do_not_drop_the_sidecar() -> None:
    pod = await manifest(extra_containers=[{"name": "gpu-exporter", "image": "busybox:1"}])
    assert set(containers(pod)) == {"notebook", "gpu-exporter", "walltime", "tokenhelper"}


async def test_a_clashing_container_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="already has a container named 'walltime'"):
        await manifest(extra_containers=[{"name": "walltime", "image": "busybox:1"}])


async def test_thread_pools_follow_the_cpu_limit_unless_the_profile_sets_them() -> None:
    profile = {"slug": "small", "kubespawner_override": {"cpu_limit": 1.5}}
    assert cpu_limit_of(profile, KubeSpawner(_mock=True)) == 1.5
    assert cpu_limit_of(None, KubeSpawner(_mock=True, cpu_limit=0.25)) == 0.25
    assert thread_env(0.25)["OMP_NUM_THREADS"] == "1"  # at least one
    assert thread_env(None) == {} and thread_env(0) == {}
    plan = full_plan()
    plan.notebook_env_defaults.update(thread_env(cpu_limit_of(profile, None)))
    pod = await manifest(plan, environment={"OMP_NUM_THREADS": "1"})
    notebook = containers(pod)["notebook"]
    env = env_of(notebook)
    assert env["OMP_NUM_THREADS"] == "1"  # the profile's own value wins ...
    assert [e["name"] for e in notebook["env"]].count("OMP_NUM_THREADS") == 1  # ... once
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS",
                 "NUMBA_NUM_THREADS"):
        assert env[name] == "2", name  # 1.5 CPUs, rounded up
    kubernetes_validate.validate(pod, "1.34", strict=True)


async def test_lxcfs_views_are_mounted_over_the_notebooks_proc_only() -> None:
    """c.Sidecars.lxcfs: each LXCFS file from the node, read-only, in the notebook only;
    ``type: File`` so a node without LXCFS fails the start visibly. Valid for Kubernetes."""
    plan = full_plan()
    plan.lxcfs = Sidecars(config=Config({"Sidecars": {"lxcfs": "/var/lib/lxcfs/"}})).lxcfs_plan()
    pod = await manifest(plan)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["lxcfs-proc-meminfo"]["hostPath"] == {
        "path": "/var/lib/lxcfs/proc/meminfo", "type": "File"}
    assert volumes["lxcfs-sys-devices-system-cpu-online"]["hostPath"]["path"] == \
        "/var/lib/lxcfs/sys/devices/system/cpu/online"
    by_container = containers(pod)
    mounts = {m["mountPath"]: m for m in by_container["notebook"]["volumeMounts"]}
    for name in ("proc/cpuinfo", "proc/meminfo", "proc/stat", "proc/uptime", "proc/loadavg",
                 "proc/diskstats", "proc/swaps", "sys/devices/system/cpu/online"):
        assert mounts[f"/{name}"]["readOnly"] is True
    for name, container in by_container.items():
        if name != "notebook":
            assert not any(m["name"].startswith("lxcfs-")
                           for m in container.get("volumeMounts", [])), name
    for version in ("1.25", "1.30", "1.34"):
        kubernetes_validate.validate(pod, version, strict=True)
    assert "lxcfs-proc-meminfo" not in json.dumps(await manifest())  # off by default


def test_a_wrong_lxcfs_setting_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match=r"c\.Sidecars\.lxcfs 'lxcfs': give the absolute"):
        Sidecars(config=Config({"Sidecars": {"lxcfs": "lxcfs"}})).lxcfs_plan()
    with pytest.raises(ValueError, match=r"c\.Sidecars\.lxcfs_files: 'proc/\.\./etc/shadow'"):
        Sidecars(config=Config({"Sidecars": {"lxcfs": "/var/lib/lxcfs",
                                             "lxcfs_files": ["proc/../etc/shadow"]}})
                 ).lxcfs_plan()


async def test_the_notebook_pods_credentials_are_readable_by_the_sidecar_that_reads_them() -> None:
    """The pod the hooks make: each sidecar runs as its own uid (the tokenhelper as the
    user's) and reads its credentials from a projected volume of its own."""
    pod = (await manifest(full_plan()))["spec"]
    from harness.volume_access import problems
    assert problems(pod, image_uid=1000) == []
    readers = {m["name"]: c["name"] for c in pod["containers"]
               for m in c.get("volumeMounts", []) if m["name"].startswith("sidecars-secrets-")}
    assert set(readers.values()) == {"walltime", "tokenhelper"}


async def test_the_tokenhelpers_metrics_port_exposes_metrics_alone() -> None:
    """c.Sidecars.tokenhelper_metrics_port: a container port named metrics, the setting in
    the tokenhelper's environment and the prometheus.io annotations — nothing else moves."""
    plan = full_plan()
    helper = next(s for s in plan.sidecars if s.name == "tokenhelper")
    helper.metrics_port = 9767
    pod = await manifest(plan)
    container = containers(pod)["tokenhelper"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9767,
                                   "protocol": "TCP"}]
    assert env_of(container)["TOKENHELPER_METRICS_PORT"] == "9767"
    assert "ports" not in containers(pod)["walltime"]
    kubernetes_validate.validate(pod, "1.30", strict=True)


async def test_a_metrics_port_serves_metrics_and_nothing_else() -> None:
    """run_service's metrics_port: /metrics on all addresses; /token, /healthz stay local."""
    import aiohttp
    from aiohttp import web
    from prometheus_client import CollectorRegistry, Counter

    from harness.hub import free_port
    from services.runtime.webapp import make_app, run_service

    registry = CollectorRegistry()
    Counter("jupyterhub_sidecars_example", "An example.", registry=registry).inc()
    app = make_app(registry)

    async def token(_: web.Request) -> web.Response:
        return web.Response(text="secret-token")

    app.router.add_get("/token", token)
    port, metrics_port = free_port(), free_port()
    seen: dict[str, int | str] = {}

    async def main() -> int:
        async with aiohttp.ClientSession() as http:
            for path in ("/metrics", "/token", "/healthz"):
                async with http.get(f"http://127.0.0.1:{metrics_port}{path}") as response:
                    seen[path] = response.status if path != "/metrics" else await response.text()
        return 0

    assert await run_service(app, main, host="127.0.0.1", port=port,
                             metrics_port=metrics_port) == 0
    assert "jupyterhub_sidecars_example_total 1.0" in str(seen["/metrics"])
    assert seen["/token"] == 404 and seen["/healthz"] == 404
