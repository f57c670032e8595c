"""The server's Secret through a real KubeSpawner against the Kubernetes API double.

KubeSpawner creates the pod through the API (its reflectors list and watch pods and events),
our ``after_pod_created_hook`` creates the server's Secret owned by that pod, and the stop
removes it — by our ``post_stop_hook`` (also from a new KubeSpawner after a hub restart,
which only has the spawner's saved state), or by the garbage collector when the pod is
deleted without the hub. The pod the API stored carries no credential.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from kubespawner.clients import load_config
from traitlets.config import Config

from harness.kube_api import KubeApi
from harness.pod_plan import CREDENTIALS, NOTEBOOK_TOKEN, full_plan
from services.hub.hooks import (
    PLAN_ATTRIBUTE,
    after_pod_created_hook,
    delete_server_secret,
    modify_pod_hook,
)

pytestmark = pytest.mark.slow
NAMESPACE = "jhub"
# The hub's Role in the Zero to JupyterHub chart (templates/hub/rbac.yaml), unchanged: the hooks
# must manage the server's Secret with exactly what the chart already grants.
Z2JH_HUB_RULES = [
    {"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
     "verbs": ["get", "watch", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
]


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubeApi]:
    double = KubeApi(rules=Z2JH_HUB_RULES)
    await double.start()

    async def kubelet(pod: dict[str, Any]) -> None:
        """Schedules the pod and reports it running (its containers do not run here)."""
        meta = pod["metadata"]
        statuses = [{"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"],
                     "imageID": "", "state": {"running": {}}}
                    for c in pod["spec"]["containers"]]
        await double.set_status(meta["namespace"], meta["name"], {
            "phase": "Running", "podIP": "10.1.2.3", "containerStatuses": statuses,
            "conditions": [{"type": "Ready", "status": "True"}]})

    double.on_created = kubelet
    config = tmp_path / "kubeconfig"
    kubeconfig = double.kubeconfig()
    kubeconfig["contexts"][0]["context"]["namespace"] = NAMESPACE
    config.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
    load_config.cache_clear()  # KubeSpawner loads the kube config once per process
    try:
        yield double
    finally:
        for reflector in list(KubeSpawner.reflectors.values()):  # shared by all spawners
            await reflector.stop()
        KubeSpawner.reflectors.clear()
        load_config.cache_clear()
        await double.stop()


def spawner(state: dict[str, Any] | None = None) -> KubeSpawner:
    config = Config({"KubeSpawner": {"namespace": NAMESPACE, "start_timeout": 30,
                                     "modify_pod_hook": modify_pod_hook,
                                     "after_pod_created_hook": after_pod_created_hook,
                                     "k8s_api_request_timeout": 5},
                     "Sidecars": {"image": "example.org/sidecars:1.2.3"}})
    instance = KubeSpawner(_mock=True, config=config)
    instance.api_token = NOTEBOOK_TOKEN
    if state is not None:
        instance.load_state(state)
    return instance


def secret_of(api: KubeApi, name: str) -> dict[str, Any] | None:
    return api.secrets.get((NAMESPACE, name))


async def test_the_secret_lives_exactly_as_long_as_the_pod(api: KubeApi) -> None:
    first = spawner()
    setattr(first, PLAN_ATTRIBUTE, full_plan())
    url = await first.start()
    assert url.startswith("http://10.1.2.3:")
    pod = api.by_name(NAMESPACE, first.pod_name)
    assert pod is not None
    secret = secret_of(api, f"{first.pod_name}-sidecars")
    assert secret is not None, "no Secret while the pod runs"
    [owner] = secret["metadata"]["ownerReferences"]
    assert owner["uid"] == pod["metadata"]["uid"]
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(values.values()) == set(CREDENTIALS)
    # What `get pods` shows (the metrics agent's only read right): no credential at all.
    stored = json.dumps(api.created[-1]) + json.dumps(pod)
    for credential in CREDENTIALS:
        assert credential not in stored

    # The hub restarts: a new KubeSpawner knows only the saved state, then stops the server.
    state = first.get_state()
    await first.stop(now=True)  # the pod goes; the old hub is gone with its memory
    again = spawner(state)
    await delete_server_secret(again)  # the post_stop_hook's part, from the saved name
    assert secret_of(api, f"{first.pod_name}-sidecars") is None


async def test_a_pod_deleted_without_the_hub_takes_its_secret_along(api: KubeApi) -> None:
    """The hub is gone; kubectl (or the node) deletes the pod: owner-reference garbage
    collection removes the Secret."""
    instance = spawner()
    setattr(instance, PLAN_ATTRIBUTE, full_plan())
    await instance.start()
    name = f"{instance.pod_name}-sidecars"
    assert secret_of(api, name) is not None
    pod = api.by_name(NAMESPACE, instance.pod_name)
    assert pod is not None
    await api.delete(pod["metadata"]["uid"])
    api._collect_garbage(pod["metadata"]["uid"])
    assert secret_of(api, name) is None
    await instance.stop(now=True)


async def test_a_leftover_secret_of_a_failed_start_is_replaced(api: KubeApi) -> None:
    """A Secret of the same name from a start the hub did not finish is not reused: the new
    one is owned by the new pod."""
    instance = spawner()
    name = f"{instance.pod_name}-sidecars"
    api.secrets[(NAMESPACE, name)] = {"metadata": {"name": name, "namespace": NAMESPACE,
                                                   "ownerReferences": [{"uid": "gone"}]},
                                      "data": {}}
    setattr(instance, PLAN_ATTRIBUTE, full_plan())
    await instance.start()
    secret = secret_of(api, name)
    assert secret is not None
    pod = api.by_name(NAMESPACE, instance.pod_name)
    assert pod is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    await instance.stop(now=True)
    await delete_server_secret(instance)
