"""Access keys as Kubernetes Secrets, so every gateway replica sees the same keys.

One Secret per key (``kubepie-key-<id>``), labelled with its user; the record holds only the
argon2 hash of the secret. Reads are cached for a few seconds per key: a key revoked on one
replica stops working on the others within that time (on the revoking one at once).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.kubepie.gateway.accesskeys import AccessKey

CACHE_SECONDS = 5.0
KEY_LABEL = "kubepie.io/access-key"
USER_LABEL = "kubepie.io/user"


class SecretKeyStore:
    def __init__(self, api: Any, namespace: str,
                 owner: dict[str, Any] | None = None) -> None:
        self._api = api
        self._namespace = namespace
        self._owner = owner
        self._cache: dict[str, tuple[float, AccessKey | None]] = {}

    @staticmethod
    def secret_name(key_id: str) -> str:
        return f"kubepie-key-{key_id.lower()}"

    async def add(self, key: AccessKey) -> None:
        metadata: dict[str, Any] = {
            "name": self.secret_name(key.key_id),
            "labels": {KEY_LABEL: "true", USER_LABEL: key.username,
                       "app.kubernetes.io/managed-by": "kubepie-gateway"}}
        if self._owner:
            metadata["ownerReferences"] = [self._owner]
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
                "data": {"record": base64.b64encode(json.dumps(key.to_record()).encode())
                         .decode()}}
        await self._api.create_namespaced_secret(self._namespace, body)
        self._cache[key.key_id] = (time.monotonic() + CACHE_SECONDS, key)

    async def get(self, key_id: str) -> AccessKey | None:
        cached = self._cache.get(key_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await self._api.read_namespaced_secret(
                self.secret_name(key_id), self._namespace, _preload_content=False)
            key: AccessKey | None = _key(await response.json())
        except ApiException as exc:
            if exc.status != 404:
                raise
            key = None
        self._cache[key_id] = (time.monotonic() + CACHE_SECONDS, key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return key

    async def for_user(self, username: str) -> list[AccessKey]:
        response = await self._api.list_namespaced_secret(
            self._namespace, label_selector=f"{KEY_LABEL}=true,{USER_LABEL}={username}",
            _preload_content=False)
        items = (await response.json()).get("items") or []
        return sorted((_key(item) for item in items), key=lambda k: k.created)

    async def remove(self, key_id: str) -> bool:
        self._cache.pop(key_id, None)
        try:
            await self._api.delete_namespaced_secret(self.secret_name(key_id), self._namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


    def close(self) -> None:
        """The API client belongs to the backend, which closes it."""


def _key(secret: dict[str, Any]) -> AccessKey:
    record = json.loads(base64.b64decode(secret["data"]["record"]))
    return AccessKey.from_record(record)
