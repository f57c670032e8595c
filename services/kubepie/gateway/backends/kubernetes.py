"""The production backend: a Pod per identity, through the Kubernetes API.

Replicas cooperate through the API only: the pod name is derived from the identity (creation
is idempotent: 409 means another replica made it), every replica watches the pods and routes
to the ready one, and the time of last use is an annotation on the pod, so the pod is deleted
only when no replica has used it for the idle time. A pod that fails or disappears is noticed
by the watch; the next request starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from services.identity.claims import Identity
from services.kubepie.gateway.accesskeys import KeyStore
from services.kubepie.gateway.backends.kube_keys import SecretKeyStore, SecretLinkStore
from services.kubepie.gateway.backends.podspec import (
    LAST_USED,
    SELECTOR,
    PodSettings,
    build_pod,
    is_finished,
    is_ready,
    pod_name,
    token_secret,
)
from services.kubepie.gateway.links import LinkStore
from services.kubepie.gateway.servers import Endpoint, StartFailed
from services.kubepie.gateway.settings import GatewaySettings
from services.kubepie.pod_identity import load_key, sign
from services.runtime.kube_config import load_kube_config
from services.runtime.kube_watch import PodWatcher
from services.storage.definition import StorageDefinition

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class PodTable:
    """The file server pods by name, as the watch last saw them; waiters wake on changes."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()  # replaced by a fresh one after each change
        self.synced = asyncio.Event()
        self.on_gone: list[Any] = []

    @property
    def pods(self) -> dict[str, dict[str, Any]]:
        return self.by_name

    def replace(self, pods: list[Mapping[str, Any]]) -> None:
        old = set(self.by_name)
        self.by_name = {p["metadata"]["name"]: dict(p) for p in pods}
        for name in old - set(self.by_name):
            self._gone(name)
        for name, pod in self.by_name.items():
            if is_finished(pod):
                self._gone(name)
        self.synced.set()
        self._notify()

    def apply(self, event_type: str, pod: Mapping[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if event_type == "DELETED":
            self.by_name.pop(name, None)
            self._gone(name)
        else:
            self.by_name[name] = dict(pod)
            if is_finished(pod):
                self._gone(name)
        self._notify()

    def _gone(self, name: str) -> None:
        for callback in self.on_gone:
            callback(name)

    def _notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], T | None]) -> T:
        while (result := predicate()) is None:
            await self.changed.wait()
        return result


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, api: Any, *, pods: PodSettings, storage: StorageDefinition,
                 identity_key: Any, token_secret: bytes, owner: dict[str, Any] | None,
                 idle_timeout: float, api_client: Any = None) -> None:
        self._api = api
        self._api_client = api_client  # closed with the backend
        self._pods = pods
        self._storage = storage
        self._identity_key = identity_key
        self._token_secret = token_secret
        self._owner = owner
        self._idle_timeout = idle_timeout
        self.table = PodTable()
        self.table.on_gone.append(self._pod_gone)
        self._endpoints: dict[str, Endpoint] = {}
        self._touched: dict[str, float] = {}
        self._watcher = PodWatcher(api, self.table, namespace=pods.namespace,
                                   label_selector=SELECTOR)
        self._tasks: list[asyncio.Task[None]] = []

    def run(self) -> None:
        self._tasks = [asyncio.create_task(self._watcher.run(), name="pod-watch"),
                       asyncio.create_task(self._sweep_forever(), name="pod-sweep")]

    def token_for(self, name: str) -> str:
        """The pod's access token: the same on every replica, never stored in the API."""
        return hmac.new(self._token_secret, name.encode(), hashlib.sha256).hexdigest()

    async def start(self, identity: Identity) -> Endpoint:
        name = pod_name(identity)
        await self.table.synced.wait()
        pod = self.table.by_name.get(name)
        if pod is not None and is_finished(pod):
            await self._delete(name)
            await self.table.wait_for(lambda: True if name not in self.table.by_name else None)
            pod = None
        if pod is None:
            await self._create(identity, name)
        created = await self.table.wait_for(lambda: self.table.by_name.get(name))
        await self._ensure_token(created)
        pod = await self.table.wait_for(lambda: self._ready_or_failed(name))
        if is_finished(pod):
            raise StartFailed(f"the file server pod {name} failed to start")
        endpoint = Endpoint(identity, f"http://{_host(pod['status']['podIP'])}:"
                            f"{self._pods.port}", self.token_for(name), name)
        self._endpoints[name] = endpoint
        return endpoint

    def _ready_or_failed(self, name: str) -> dict[str, Any] | None:
        pod = self.table.by_name.get(name)
        if pod is not None and (is_ready(pod) or is_finished(pod)):
            return pod
        return None

    async def _create(self, identity: Identity, name: str) -> None:
        body = build_pod(identity, name=name, settings=self._pods, storage=self._storage,
                         signed_identity=sign(identity, name, self._identity_key),
                         owner=self._owner)
        try:
            await self._api.create_namespaced_pod(self._pods.namespace, body)
            log.info("pod created", extra={"user": identity.username, "pod": name})
        except ApiException as exc:
            if exc.status == 409:
                return  # another replica (or an earlier request) created it
            raise StartFailed(f"creating pod {name} failed: {exc.status} "
                              f"{_message(exc)}") from None

    async def _ensure_token(self, pod: dict[str, Any]) -> None:
        """The pod's token Secret, owned by this pod (whichever replica created the pod; the
        token is the same on every replica). The pod waits for it before it starts."""
        secret = token_secret(pod, self.token_for(pod["metadata"]["name"]))
        name = secret["metadata"]["name"]
        try:
            await self._api.create_namespaced_secret(self._pods.namespace, secret)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise StartFailed(f"creating {name} failed: {exc.status} "
                                  f"{_message(exc)}") from None
        existing = await self._api.read_namespaced_secret(name, self._pods.namespace)
        owners = existing.metadata.owner_references or []
        if any(o.uid == pod["metadata"]["uid"] for o in owners):
            return  # another replica made it for this very pod
        # Left from an earlier pod of the same name: replace it (Secrets are not patched).
        with contextlib.suppress(ApiException):
            await self._api.delete_namespaced_secret(name, self._pods.namespace)
        await self._api.create_namespaced_secret(self._pods.namespace, secret)

    async def _delete(self, name: str) -> None:
        try:
            await self._api.delete_namespaced_pod(name, self._pods.namespace,
                                                  grace_period_seconds=10)
            log.info("pod deleted", extra={"pod": name})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _pod_gone(self, name: str) -> None:
        endpoint = self._endpoints.pop(name, None)
        if endpoint is not None:
            endpoint.dead.set()
            log.warning("file server pod is gone or failed", extra={"pod": name})

    def note_use(self, endpoint: Endpoint) -> None:
        """Record use on the pod, at most every idle/4 seconds per pod (shared by replicas)."""
        now = time.time()
        if now - self._touched.get(endpoint.name, 0.0) < self._idle_timeout / 4:
            return
        self._touched[endpoint.name] = now
        patch = {"metadata": {"annotations": {LAST_USED: str(int(now))}}}
        task = asyncio.create_task(self._patch(endpoint.name, patch))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _patch(self, name: str, patch: dict[str, Any]) -> None:
        with contextlib.suppress(ApiException):
            await self._api.patch_namespaced_pod(name, self._pods.namespace, patch)

    async def stop(self, endpoint: Endpoint) -> None:
        """Idle here; deleted only if no replica used it lately (the annotation says)."""
        self._endpoints.pop(endpoint.name, None)
        pod = self.table.by_name.get(endpoint.name)
        if pod is not None and self._idle_for(pod) >= self._idle_timeout:
            await self._delete(endpoint.name)

    def _idle_for(self, pod: dict[str, Any]) -> float:
        value = ((pod.get("metadata") or {}).get("annotations") or {}).get(LAST_USED, "0")
        try:
            return time.time() - float(value)
        except ValueError:
            return float("inf")

    async def _sweep_forever(self) -> None:
        """Delete idle pods nobody routes to any more (e.g. their replica went away)."""
        while True:
            await asyncio.sleep(max(5.0, min(60.0, self._idle_timeout / 4)))
            for name, pod in list(self.table.by_name.items()):
                if name not in self._endpoints and (self._idle_for(pod) >= self._idle_timeout
                                                    or is_finished(pod)):
                    with contextlib.suppress(ApiException):
                        await self._delete(name)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._api_client is not None:
            await self._api_client.close()


async def connect(settings: GatewaySettings
                  ) -> tuple[KubernetesBackend, KeyStore, LinkStore]:
    await load_kube_config(settings.kubeconfig)
    namespace = settings.namespace or await asyncio.to_thread(
        lambda: SERVICE_ACCOUNT_NAMESPACE.read_text().strip())
    api_client = client.ApiClient()
    core = client.CoreV1Api(api_client)
    owner = None
    if settings.owner_deployment:
        deployment = await client.AppsV1Api(api_client).read_namespaced_deployment(
            settings.owner_deployment, namespace)
        owner = {"apiVersion": "apps/v1", "kind": "Deployment",
                 "name": deployment.metadata.name, "uid": deployment.metadata.uid,
                 "blockOwnerDeletion": False, "controller": False}
    assert settings.identity_key_file is not None and settings.session_secret is not None
    storage = settings.storage
    key = await asyncio.to_thread(load_key, settings.identity_key_file)
    backend = KubernetesBackend(
        core, pods=PodSettings(namespace=namespace, image=settings.pod_image,
                               port=settings.pod_port, memory_limit=settings.pod_memory_limit,
                               processes=settings.fileserver_processes),
        storage=storage, identity_key=key,
        token_secret=hashlib.sha256(b"kubepie-pod-token:" + settings.session_secret
                                    .get_secret_value().encode()).digest(),
        owner=owner, idle_timeout=settings.idle_timeout, api_client=api_client)
    backend.run()
    return backend, SecretKeyStore(core, namespace), SecretLinkStore(core, namespace)


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.reason))
    except ValueError:
        return str(exc.reason)
