"""The kubernetes backend end to end, against the API server double and a kubelet double:
the gateway creates a Pod per user, the API double sends it to the real admission webhook
(TLS, AdmissionReview v1), the kubelet double runs the admitted pod as a real file server;
a pod that dies is noticed by the watch and replaced; access keys live in Secrets."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from joserfc.jwk import ECKey

from harness.gateway import Gateway, access_token, make_homes, remove, temp_root
from harness.hub import free_port
from harness.kube_api import KubeApi, role_rules
from harness.kubelet import Kubelet
from harness.oidc import OidcProvider
from harness.tls import serving_certificate
from harness.tools import REPO, VENV_BIN
from services.identity.claims import Identity
from services.kubepie.gateway.accesskeys import AccessKeys
from services.kubepie.gateway.backends.kube_keys import SecretKeyStore
from services.kubepie.pod_identity import ANNOTATION, generate_key, sign
from services.kubepie.webhook.admission import review

pytestmark = pytest.mark.slow
NAMESPACE = "kubepie"
STORAGE = {
    "volumes": [{"name": "homes", "persistentVolumeClaim": {"claimName": "homes"}},
                {"name": "data", "nfs": {"server": "nfs.example.org", "path": "/export/data"}}],
    "mounts": [{"name": "home", "volume": "homes", "subPath": "{username}"},
               {"name": "data", "volume": "data", "readOnly": True}],
}
ALICE = Identity("alice", 1001, 1001, (5000,), ("xray",))


@dataclass
class Cluster:
    api: KubeApi
    kubelet: Kubelet
    gateway: Gateway
    provider: OidcProvider
    keys: tuple[Path, Path]
    webhook: subprocess.Popen[bytes]

    async def get(self, user: str, path: str) -> httpx.Response:
        token = await asyncio.to_thread(access_token, self.provider, user)
        async with httpx.AsyncClient(timeout=60) as client:
            return await client.get(f"{self.gateway.url}{path}",
                                    headers={"Authorization": f"Bearer {token}"})


async def _wait_https(url: str, ca: Path, process: subprocess.Popen[bytes]) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(verify=context, timeout=2) as client:
        for _ in range(200):
            assert process.poll() is None, "the webhook exited"
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    idle = getattr(request, "param", {}).get("idle", "20s")
    root = make_homes(temp_root())
    private, public = generate_key()
    (root / "identity.pem").write_text(private)
    (root / "identity.pub").write_text(public)
    ca, cert, key = serving_certificate(root)
    webhook_port = free_port()
    webhook = subprocess.Popen(
        [str(VENV_BIN / "jupyterhub-sidecars"), "kubepie", "webhook"],
        env={**os.environ, "KUBEPIE_WEBHOOK_IDENTITY_PUBLIC_KEY_FILE": str(root / "identity.pub"),
             "KUBEPIE_WEBHOOK_TLS_CERT_FILE": str(cert), "KUBEPIE_WEBHOOK_TLS_KEY_FILE": str(key),
             "KUBEPIE_WEBHOOK_HOST": "127.0.0.1", "KUBEPIE_WEBHOOK_PORT": str(webhook_port)},
        stdout=(root / "webhook.log").open("wb"), stderr=subprocess.STDOUT)
    api = KubeApi(webhook_url=f"https://127.0.0.1:{webhook_port}/mutate", webhook_ca=str(ca),
                  rules=role_rules(str(REPO / "deploy/kubepie/rbac.yaml"), "kubepie-gateway"))
    await api.start()
    api.deployments[(NAMESPACE, "kubepie-gateway")] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kubepie-gateway", "namespace": NAMESPACE,
                     "uid": "6f1d0c5e-0000-4000-8000-000000000001"}}
    kubelet = Kubelet(api, {"homes": root / "home", "data": root / "data"})
    api.on_created = kubelet.run_pod
    api.on_deleted = kubelet.stop_pod
    (root / "kubeconfig").write_text(yaml.safe_dump(api.kubeconfig()))
    (root / "storage.yaml").write_text(yaml.safe_dump(STORAGE))
    provider = OidcProvider(root / "provider.log", token_max_age=120)
    await asyncio.to_thread(provider.start)
    gateway = Gateway(provider, root, {
        "KUBEPIE_BACKEND": "kubernetes", "KUBEPIE_KUBECONFIG": str(root / "kubeconfig"),
        "KUBEPIE_NAMESPACE": NAMESPACE, "KUBEPIE_POD_IMAGE": "registry.example.org/kubepie:1",
        "KUBEPIE_STORAGE_FILE": str(root / "storage.yaml"),
        "KUBEPIE_IDENTITY_KEY_FILE": str(root / "identity.pem"),
        "KUBEPIE_POD_PORT": str(free_port()), "KUBEPIE_OWNER_DEPLOYMENT": "kubepie-gateway",
        "KUBEPIE_IDLE_TIMEOUT": idle, "KUBEPIE_OPAQUE_TOKENS": "userinfo"})
    cluster = Cluster(api, kubelet, gateway, provider, (root / "identity.pem", ca), webhook)
    try:
        await _wait_https(f"https://127.0.0.1:{webhook_port}/healthz", ca, webhook)
        await asyncio.to_thread(gateway.start)
        yield cluster
    finally:
        await asyncio.to_thread(gateway.stop)
        await kubelet.stop_all()
        await api.stop()
        webhook.terminate()
        webhook.wait(10)
        await asyncio.to_thread(provider.stop)
        remove(root)


async def test_a_pod_per_user_admitted_run_and_replaced(cluster: Cluster) -> None:
    response = await cluster.get("alice", "/home/secret.txt")
    assert response.status_code == 200 and response.text == "alice's secret\n"
    [body] = cluster.api.created
    # No credential in the pod: the token is in a Secret owned by the pod.
    token_secret = cluster.api.secrets[(NAMESPACE, f"{body['metadata']['name']}-token")]
    token = base64.b64decode(token_secret["data"]["token"]).decode()
    assert len(token) == 64 and token not in json.dumps(body)
    pod = cluster.api.by_name(NAMESPACE, body["metadata"]["name"])
    assert pod is not None and token not in json.dumps(pod)
    assert token_secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    _check_pod(body)
    for version in ("1.25", "1.30", "1.34"):
        kubernetes_validate.validate(body, version, strict=True)
    admitted = cluster.api.by_name(NAMESPACE, body["metadata"]["name"])
    assert admitted is not None
    assert admitted["spec"]["securityContext"]["runAsUser"] == 1001  # webhook patch applied

    bob = await cluster.get("bob", "/home/secret.txt")
    assert bob.text == "bob's secret\n" and len(cluster.api.created) == 2
    again = await cluster.get("alice", "/home/secret.txt")
    assert again.status_code == 200 and len(cluster.api.created) == 2  # the same pod

    name = body["metadata"]["name"]
    await cluster.kubelet.crash(NAMESPACE, name)
    await asyncio.sleep(0.5)  # the watch event reaches the gateway
    revived = await cluster.get("alice", "/home/secret.txt")
    assert revived.status_code == 200 and revived.text == "alice's secret\n"
    assert f"DELETE /api/v1/namespaces/{NAMESPACE}/pods/{name}" in " ".join(
        r.split("?")[0] for r in cluster.api.requests)
    assert len(cluster.api.created) == 3 and cluster.api.created[2]["metadata"]["name"] == name
    assert cluster.api.denied == []  # the Role in deploy/kubepie/rbac.yaml grants all it does


def _check_pod(pod: dict[str, Any]) -> None:
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["namespace"] == NAMESPACE and meta["name"].startswith("kubepie-alice-")
    assert meta["labels"] == {"app.kubernetes.io/name": "kubepie-fileserver",
                              "app.kubernetes.io/part-of": "kubepie",
                              "app.kubernetes.io/managed-by": "kubepie-gateway",
                              "kubepie.io/user": "alice"}
    assert meta["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "kubepie-gateway",
        "uid": "6f1d0c5e-0000-4000-8000-000000000001", "blockOwnerDeletion": False,
        "controller": False}]
    assert ANNOTATION in meta["annotations"] and "kubepie.io/last-used" in meta["annotations"]
    assert spec["securityContext"] == {"runAsUser": 1001, "runAsGroup": 1001,
                                       "supplementalGroups": [5000], "runAsNonRoot": True,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    [container] = spec["containers"]
    assert container["image"] == "registry.example.org/kubepie:1"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "webdav"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FILESERVER_MOUNTS"] == "home=/srv/kubepie/home,data=/srv/kubepie/data"
    assert env["FILESERVER_READ_ONLY"] == "data"
    assert env["FILESERVER_PROCESSES"] == "1"  # KUBEPIE_FILESERVER_PROCESSES
    assert env["FILESERVER_ACCESS_TOKEN_FILE"] == "/etc/kubepie/token"
    assert "FILESERVER_ACCESS_TOKEN" not in env  # by file, from the pod's own Secret
    assert container["volumeMounts"] == [
        {"name": "homes", "mountPath": "/srv/kubepie/home", "subPath": "alice"},
        {"name": "data", "mountPath": "/srv/kubepie/data", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "token", "mountPath": "/etc/kubepie", "readOnly": True}]
    assert {"name": "token", "secret": {"secretName": f"{meta['name']}-token",
                                        "defaultMode": 0o444}} in spec["volumes"]
    assert spec["volumes"][:2] == STORAGE["volumes"]
    assert container["resources"]["limits"] == {"memory": "512Mi"}


@pytest.mark.parametrize("cluster", [{"idle": "2s"}], indirect=True)
async def test_idle_pods_are_deleted_and_come_back_on_demand(cluster: Cluster) -> None:
    assert (await cluster.get("alice", "/home/secret.txt")).status_code == 200
    name = cluster.api.created[0]["metadata"]["name"]
    deadline = asyncio.get_running_loop().time() + 20
    while cluster.api.by_name(NAMESPACE, name) is not None:
        assert asyncio.get_running_loop().time() < deadline, "the idle pod was not deleted"
        await asyncio.sleep(0.2)
    annotations = cluster.api.created[0]["metadata"]["annotations"]
    assert int(annotations["kubepie.io/last-used"]) > 0
    assert (await cluster.get("alice", "/home/secret.txt")).status_code == 200
    assert len(cluster.api.created) == 2


async def test_nobody_else_can_start_a_file_server_as_alice(cluster: Cluster) -> None:
    """Someone with pod-create rights in the namespace, copying or forging identities."""
    await cluster.get("alice", "/home/")
    genuine = cluster.api.created[0]
    private = ECKey.import_key(cluster.keys[0].read_bytes())
    attempts = {
        "no identity": _without_annotation(genuine),
        "copied identity, other ids": _with_ids(genuine, 1002, 1002),
        "copied identity, container runs as root": _container_user(genuine, 0),
        "copied identity, other pod name": _renamed(genuine, "kubepie-mallory-1"),
        "identity signed by another key": _signed(genuine, ECKey.import_key(generate_key()[0])),
        "privileged container": _privileged(_signed(genuine, private, "kubepie-x-2"),),
    }
    async with httpx.AsyncClient(base_url=cluster.api.url, timeout=30,
                                 headers={"Authorization": "Bearer test-token"}) as client:
        for reason, pod in attempts.items():
            answer = await client.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod)
            assert answer.status_code == 403, (reason, answer.text)
            assert "kubepie" in answer.json()["message"], reason
        fine = _signed(genuine, private, "kubepie-alice-extra")
        answer = await client.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=fine)
        assert answer.status_code == 201, answer.text


def _renamed(pod: dict[str, Any], name: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"]["name"] = name
    return pod


def _without_annotation(pod: dict[str, Any]) -> dict[str, Any]:
    pod = _renamed(pod, "kubepie-alice-no-identity")
    del pod["metadata"]["annotations"][ANNOTATION]
    return pod


def _with_ids(pod: dict[str, Any], uid: int, gid: int) -> dict[str, Any]:
    pod = _renamed(pod, pod["metadata"]["name"] + "-x")
    pod["metadata"]["name"] = pod["metadata"]["name"][:-2]  # the name it was signed for
    pod["spec"]["securityContext"] |= {"runAsUser": uid, "runAsGroup": gid}
    return pod


def _container_user(pod: dict[str, Any], uid: int) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["spec"]["containers"][0]["securityContext"]["runAsUser"] = uid
    return pod


def _signed(pod: dict[str, Any], key: ECKey, name: str | None = None) -> dict[str, Any]:
    pod = _renamed(pod, name or pod["metadata"]["name"])
    pod["metadata"]["annotations"][ANNOTATION] = sign(ALICE, pod["metadata"]["name"], key)
    return pod


def _privileged(pod: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["containers"][0]["securityContext"]["privileged"] = True
    return pod


async def test_access_keys_in_secrets_are_shared_by_replicas(cluster: Cluster) -> None:
    from kubernetes_asyncio import client, config

    await config.load_kube_config(config_file=str(cluster.gateway.root / "kubeconfig"))
    async with client.ApiClient() as api_client:
        core = client.CoreV1Api(api_client)
        one = AccessKeys(SecretKeyStore(core, NAMESPACE), max_lifetime=None)
        other = AccessKeys(SecretKeyStore(core, NAMESPACE), max_lifetime=None)
        key, secret = await one.create(ALICE, "laptop", 86400)
        assert await other.authenticate(key.key_id, secret) == ALICE
        stored = cluster.api.secrets[(NAMESPACE, f"kubepie-key-{key.key_id.lower()}")]
        assert stored["metadata"]["labels"]["kubepie.io/user"] == "alice"
        record = base64.b64decode(stored["data"]["record"]).decode()
        assert secret not in record and "$argon2id$" in json.loads(record)["secret_hash"]
        assert [k.key_id for k in await other.store.for_user("alice")] == [key.key_id]
        assert await other.store.for_user("bob") == []
        assert await one.revoke(key.key_id, "alice")
        assert (NAMESPACE, f"kubepie-key-{key.key_id.lower()}") not in cluster.api.secrets
    assert cluster.api.denied == []


async def test_the_api_double_enforces_the_role(cluster: Cluster) -> None:
    """What the Role does not grant is refused as the API server refuses it (so the test
    above can fail)."""
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.client.exceptions import ApiException

    await config.load_kube_config(config_file=str(cluster.gateway.root / "kubeconfig"))
    async with client.ApiClient() as api_client:
        with pytest.raises(ApiException) as refused:
            await client.CoreV1Api(api_client).replace_namespaced_pod(
                "anyone", NAMESPACE, {"metadata": {"name": "anyone"}})
        assert refused.value.status == 403 and "cannot update resource" in str(refused.value.body)
        with pytest.raises(ApiException) as other:
            await client.AppsV1Api(api_client).read_namespaced_deployment("hub", NAMESPACE)
        assert other.value.status == 403  # resourceNames: its own Deployment only
    assert cluster.api.denied == ["update pods anyone", "get deployments hub"]


def test_admission_review_as_the_api_server_sends_it(tmp_path: Path) -> None:
    private, public = generate_key()
    key, check = ECKey.import_key(private), ECKey.import_key(public)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "kubepie-alice-0123456789", "namespace": NAMESPACE,
                        "annotations": {ANNOTATION: sign(ALICE, "kubepie-alice-0123456789",
                                                         key)}},
           "spec": {"containers": [{"name": "fileserver", "image": "x"}]}}
    request = {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "kubepie-alice-0123456789", "namespace": NAMESPACE, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kubepie:kubepie-gateway",
                         "uid": "014fbff9a07c", "groups": ["system:serviceaccounts"]},
            "object": pod, "oldObject": None,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            "dryRun": False}}
    answer = review(request, check)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002" and response["allowed"]
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == [
        {"op": "add", "path": "/spec/securityContext",
         "value": {"runAsUser": 1001, "runAsGroup": 1001, "supplementalGroups": [5000],
                   "runAsNonRoot": True}}]
    request["request"]["object"]["spec"]["hostPID"] = True
    denied = review(request, check)["response"]
    assert not denied["allowed"] and denied["status"]["code"] == 403
    assert "hostPID" in denied["status"]["message"]
    with pytest.raises(ValueError, match="AdmissionReview"):
        review({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}, check)
