"""A Kubernetes API server double for pods: list and watch with the real shapes.

What the metrics agent relies on, as the API server does it: ``PodList`` with
``metadata.resourceVersion``; ``?watch=true|1|True`` streams newline-delimited
``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}`` events after the given
resourceVersion; a resourceVersion older than the kept history gets an ERROR event with a 410
``Status`` ("Expired"); ``labelSelector`` (equality, ``,`` = and) and ``fieldSelector``
(``spec.nodeName``, ``metadata.namespace``) filter both; ``timeoutSeconds`` ends the stream.
kmock 0.8 misses several of these (selectors, ``watch=True``, resourceVersions), hence this.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TRUE = {"true", "1", "True"}


@dataclass
class KubeApi:
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    version: int = 100
    oldest_kept: int = 0  # events at or below this version are forgotten (compaction)
    requests: list[str] = field(default_factory=list)
    unreachable: bool = False  # watches end and new requests get 503 (a network partition)
    _changed: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> str:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_get("/api/v1/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
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
