"""A Kubernetes API server double for pods: list and watch with the real shapes.

What the metrics agent relies on, as the API server does it: ``PodList`` with
``metadata.resourceVersion``; ``?watch=true|1|True`` streams newline-delimited
``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}`` events after the given
resourceVersion; a resourceVersion older than the kept history gets an ERROR event with a 410
``Status`` ("Expired"); ``labelSelector`` (equality, ``,`` = and) and ``fieldSelector``
(``spec.nodeName``, ``metadata.namespace``) filter both; ``timeoutSeconds`` ends the stream.
kmock 0.8 misses several of these (selectors, ``watch=True``, resourceVersions), hence this.

For the kubepie gateway it also creates (``POST``, 201, 409 AlreadyExists with a ``Status``),
reads, merge-patches and deletes pods by name (a delete is a DELETED event), keeps Secrets
(create/get/list by label/delete) and reads a Deployment; like the real API server it sends
each pod creation to a mutating admission webhook (AdmissionReview v1 over TLS) when one is
configured, applies its JSONPatch, or refuses the pod with the webhook's status.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

TRUE = {"true", "1", "True"}


PodHook = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]

@dataclass
class KubeApi:
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    version: int = 100
    oldest_kept: int = 0  # events at or below this version are forgotten (compaction)
    requests: list[str] = field(default_factory=list)
    unreachable: bool = False  # watches end and new requests get 503 (a network partition)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)  # pod bodies as POSTed
    webhook_url: str | None = None           # mutating admission webhook for pods
    webhook_ca: str | None = None            # its CA bundle (PEM file)
    on_created: PodHook | None = None  # "the kubelet"
    on_deleted: PodHook | None = None  # stops containers
    rules: list[dict[str, Any]] | None = None  # a Role's rules: RBAC as the API server checks
    denied: list[str] = field(default_factory=list)  # requests the rules refused
    _changed: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> str:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_get("/api/v1/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
        app.router.add_post("/api/v1/namespaces/{namespace}/pods", self._create_pod)
        app.router.add_route("*", "/api/v1/namespaces/{namespace}/pods/{name}", self._pod)
        app.router.add_get("/api/v1/namespaces/{namespace}/secrets", self._list_secrets)
        app.router.add_post("/api/v1/namespaces/{namespace}/secrets", self._create_secret)
        app.router.add_route("*", "/api/v1/namespaces/{namespace}/secrets/{name}", self._secret)
        app.router.add_get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                           self._deployment)
        app.router.add_get("/api/v1/namespaces/{namespace}/events", self._events)
        self._runner = web.AppRunner(app, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self.cut_off(True)  # ends open watch streams
            await self._runner.cleanup()

    def kubeconfig(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Config", "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}

    async def put(self, pod: dict[str, Any]) -> None:
        """Create or update a pod (ADDED / MODIFIED)."""
        uid = pod["metadata"]["uid"]
        kind = "MODIFIED" if uid in self.pods else "ADDED"
        await self._record(kind, pod)

    async def delete(self, uid: str) -> None:
        await self._record("DELETED", self.pods[uid])

    async def compact(self) -> None:
        """Forget all history, as etcd compaction does: older watches get 410."""
        self.oldest_kept = self.version

    async def cut_off(self, unreachable: bool) -> None:
        assert self._changed is not None
        self.unreachable = unreachable
        async with self._changed:
            self._changed.notify_all()

    async def _record(self, kind: str, pod: dict[str, Any]) -> None:
        assert self._changed is not None
        self.version += 1
        pod = copy.deepcopy(pod)
        pod["metadata"]["resourceVersion"] = str(self.version)
        if kind == "DELETED":
            self.pods.pop(pod["metadata"]["uid"], None)
        else:
            self.pods[pod["metadata"]["uid"]] = pod
        self.history.append((self.version, kind, pod))
        async with self._changed:
            self._changed.notify_all()

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(str(request.rel_url))
        if self.unreachable:
            return _status(503, "ServiceUnavailable", "the API server is unreachable")
        if request.headers.get("Authorization") != "Bearer test-token":
            return _status(401, "Unauthorized", "Unauthorized")
        query = request.query
        namespace = request.match_info.get("namespace")
        match = _matcher(namespace, query.get("labelSelector", ""),
                         query.get("fieldSelector", ""))
        if query.get("watch") in TRUE:
            return await self._watch(request, match)
        items = [p for p in self.pods.values() if match(p)]
        return web.json_response({"kind": "PodList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self.version)},
                                  "items": items})

    async def _watch(self, request: web.Request, match: Any) -> web.StreamResponse:
        assert self._changed is not None
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        since = int(request.query.get("resourceVersion") or self.version)
        if since < self.oldest_kept:
            await _send(response, {"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": f"too old resource version: {since} ({self.oldest_kept})",
                "reason": "Expired", "code": 410}})
            return response
        timeout = float(request.query.get("timeoutSeconds", "300"))
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.unreachable:
            for version, kind, pod in self.history:
                if version > since and match(pod):
                    await _send(response, {"type": kind, "object": pod})
            since = self.version
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return response
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    return response
        return response


    # -- pods by name (the gateway) -------------------------------------------------------

    def by_name(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((p for p in self.pods.values() if p["metadata"]["name"] == name and
                     p["metadata"].get("namespace") == namespace), None)

    def _authorized(self, request: web.Request) -> web.Response | None:
        self.requests.append(f"{request.method} {request.rel_url}")
        if self.unreachable:
            return _status(503, "ServiceUnavailable", "the API server is unreachable")
        if request.headers.get("Authorization") != "Bearer test-token":
            return _status(401, "Unauthorized", "Unauthorized")
        if self.rules is not None:
            return self._rbac(request)
        return None

    def _rbac(self, request: web.Request) -> web.Response | None:
        """Refuse what the Role does not grant, with the API server's own message."""
        group, resource, name = _resource_of(request)
        verb = _verb_of(request, name)
        for rule in self.rules or []:
            if (group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
                    and verb in rule.get("verbs", [])
                    and (not rule.get("resourceNames") or name in rule["resourceNames"])):
                return None
        self.denied.append(f"{verb} {resource} {name}".strip())
        namespace = request.match_info.get("namespace", "")
        subject = f'{resource} "{name}"' if name else resource
        return _status(403, "Forbidden",
                       f'{subject} is forbidden: User "system:serviceaccount:{namespace}:test" '
                       f'cannot {verb} resource "{resource}" in API group "{group}" '
                       f'in the namespace "{namespace}"')

    async def _create_pod(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused:
            return refused
        namespace = request.match_info["namespace"]
        pod = await request.json()
        self.created.append(copy.deepcopy(pod))
        meta = pod.setdefault("metadata", {})
        meta.setdefault("namespace", namespace)
        if self.webhook_url:
            verdict = await self._admit(pod)
            if not verdict.get("allowed"):
                status = verdict.get("status") or {}
                return _status(int(status.get("code", 400)), "Forbidden",
                               'admission webhook "kubepie.io" denied the request: '
                               f"{status.get('message', '')}")
            if verdict.get("patch"):
                pod = apply_patch(pod, json.loads(base64.b64decode(verdict["patch"])))
        meta = pod["metadata"]
        # As in the API server: admission first, then storage finds the name taken.
        if self.by_name(namespace, meta.get("name", "")) is not None:
            return _status(409, "AlreadyExists", f'pods "{meta["name"]}" already exists')
        meta |= {"uid": str(uuid.uuid4()), "creationTimestamp": "2026-11-23T00:00:00Z"}
        pod["status"] = {"phase": "Pending"}
        await self._record("ADDED", pod)
        if self.on_created is not None:
            task = asyncio.create_task(self.on_created(copy.deepcopy(pod)))
            task.add_done_callback(lambda _: None)
        return web.json_response(self.by_name(namespace, meta["name"]), status=201)

    async def _admit(self, pod: dict[str, Any]) -> dict[str, Any]:
        review: dict[str, Any] = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": str(uuid.uuid4()), "operation": "CREATE",
                              "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "resource": {"group": "", "version": "v1", "resource": "pods"},
                              "namespace": pod["metadata"]["namespace"],
                              "name": pod["metadata"].get("name", ""), "object": pod,
                              "userInfo": {"username": "system:serviceaccount:kubepie:gateway"},
                              "dryRun": False}}
        context = ssl.create_default_context(cafile=self.webhook_ca)
        async with httpx.AsyncClient(verify=context, timeout=10) as client:
            answer = await client.post(str(self.webhook_url), json=review)
        answer.raise_for_status()
        body = answer.json()
        assert body["response"]["uid"] == review["request"]["uid"]
        return dict(body["response"])

    async def _pod(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused:
            return refused
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        pod = self.by_name(namespace, name)
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        if request.method == "GET":
            return web.json_response(pod)
        if request.method == "DELETE":
            await self._record("DELETED", pod)
            self._collect_garbage(pod["metadata"]["uid"])
            if self.on_deleted is not None:
                await self.on_deleted(copy.deepcopy(pod))
            return web.json_response(pod)
        if request.method == "PATCH":
            assert request.content_type in ("application/merge-patch+json",
                                            "application/strategic-merge-patch+json",
                                            "application/json-patch+json"), request.content_type
            patched = merge(copy.deepcopy(pod), await request.json())
            await self._record("MODIFIED", patched)
            return web.json_response(self.by_name(namespace, name))
        return _status(405, "MethodNotAllowed", request.method)

    def _collect_garbage(self, owner_uid: str) -> None:
        """What the garbage collector does after an owner is deleted: its dependents go."""
        for key, secret in list(self.secrets.items()):
            owners = secret["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == owner_uid for o in owners):
                del self.secrets[key]

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """No events happen here; the list (and a watch that only times out) has the real
        shape, for KubeSpawner's event reflector."""
        refused = self._authorized(request)
        if refused:
            return refused
        if request.query.get("watch") in TRUE:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            timeout = min(float(request.query.get("timeoutSeconds", "5")), 5.0)
            await asyncio.sleep(timeout)
            return response
        return web.json_response({"kind": "EventList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self.version)},
                                  "items": []})

    async def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """What the kubelet reports (phase, podIP, conditions)."""
        pod = copy.deepcopy(self.by_name(namespace, name))
        assert pod is not None, name
        pod["status"] = status
        await self._record("MODIFIED", pod)

    # -- secrets and deployments -----------------------------------------------------------

    async def _create_secret(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused:
            return refused
        namespace = request.match_info["namespace"]
        secret = await request.json()
        key = (namespace, secret["metadata"]["name"])
        if key in self.secrets:
            return _status(409, "AlreadyExists", f'secrets "{key[1]}" already exists')
        secret["metadata"] |= {"namespace": namespace, "uid": str(uuid.uuid4()),
                               "resourceVersion": str(self.version)}
        self.secrets[key] = secret
        return web.json_response(secret, status=201)

    async def _secret(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused:
            return refused
        key = (request.match_info["namespace"], request.match_info["name"])
        secret = self.secrets.get(key)
        if secret is None:
            return _status(404, "NotFound", f'secrets "{key[1]}" not found')
        if request.method == "DELETE":
            del self.secrets[key]
            return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                      "status": "Success", "details": {"name": key[1],
                                                                       "kind": "secrets"}})
        if request.method == "PATCH":
            body = await request.json()
            if request.content_type == "application/json-patch+json":
                secret = apply_patch(copy.deepcopy(secret), body)
            elif request.content_type in ("application/merge-patch+json",
                                          "application/strategic-merge-patch+json"):
                secret = merge(copy.deepcopy(secret), body)
            else:
                return _status(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - "
                               f"accepted media types include: application/json-patch+json, "
                               f"application/merge-patch+json, got {request.content_type}")
            self.secrets[key] = secret
        return web.json_response(secret)

    async def _list_secrets(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused:
            return refused
        namespace = request.match_info["namespace"]
        wanted = dict(part.split("=", 1) for part in
                      request.query.get("labelSelector", "").split(",") if part)
        items = [s for (ns, _), s in self.secrets.items() if ns == namespace and all(
            (s["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
        return web.json_response({"kind": "SecretList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self.version)},
                                  "items": items})

    async def _deployment(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused:
            return refused
        key = (request.match_info["namespace"], request.match_info["name"])
        if key not in self.deployments:
            return _status(404, "NotFound", f'deployments.apps "{key[1]}" not found')
        return web.json_response(self.deployments[key])


def _resource_of(request: web.Request) -> tuple[str, str, str]:
    """(API group, resource, name) of a request path such as /apis/apps/v1/namespaces/x/..."""
    parts = request.path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"]:
        rest = rest[2:]
    return group, rest[0], rest[1] if len(rest) > 1 else ""


def _verb_of(request: web.Request, name: str) -> str:
    if request.method == "GET":
        if request.query.get("watch") in TRUE:
            return "watch"
        return "get" if name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection"}[request.method]


def role_rules(path: str, role: str) -> list[dict[str, Any]]:
    """The rules of one Role in a manifest, as an operator applies them."""
    import yaml

    with open(path) as stream:
        for document in yaml.safe_load_all(stream):
            if document and document.get("kind") == "Role" and \
                    document["metadata"]["name"] == role:
                return list(document["rules"])
    raise LookupError(f"no Role {role} in {path}")


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge(target.get(key), value)
    return target


def apply_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON Patch, the ``add``/``replace`` operations admission webhooks send."""
    document = copy.deepcopy(document)
    for operation in operations:
        assert operation["op"] in ("add", "replace"), operation
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in operation["path"].split("/")[1:]]
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        else:
            node[last] = operation["value"]
    return document


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": message, "reason": reason,
                              "code": code}, status=code)


def _matcher(namespace: str | None, labels: str, fields: str) -> Any:
    wanted_labels = dict(part.split("=", 1) for part in labels.split(",") if part)
    wanted_fields = dict(part.split("=", 1) for part in fields.split(",") if part)

    def match(pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        if namespace and meta.get("namespace") != namespace:
            return False
        have = meta.get("labels") or {}
        if any(have.get(k) != v for k, v in wanted_labels.items()):
            return False
        values = {"spec.nodeName": pod.get("spec", {}).get("nodeName"),
                  "metadata.namespace": meta.get("namespace"),
                  "metadata.name": meta.get("name")}
        return all(values.get(k) == v for k, v in wanted_fields.items())

    return match
