"""Access keys and share links as Kubernetes Secrets, so every gateway replica sees them.

One Secret per key (``kubepie-key-<id>``) or link (``kubepie-link-<hash>``), labelled with its
user (sanitised for a label value; the record's own user is checked too); the record holds
only the argon2 hash of a key's secret, the SHA-256 of a link's token. Reads are cached for a
few seconds: a key or link revoked on one replica stops working on the others within that
time (on the revoking one at once). They are owned by nothing: a redeployed gateway keeps
them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.kubepie.gateway.accesskeys import AccessKey
from services.kubepie.gateway.backends.podspec import label_value
from services.kubepie.gateway.links import ShareLink, decode_record, encode_record

CACHE_SECONDS = 5.0
KEY_LABEL = "kubepie.io/access-key"
LINK_LABEL = "kubepie.io/share-link"
USER_LABEL = "kubepie.io/user"
USES = "kubepie.io/uses"


class SecretKeyStore:
    def __init__(self, api: Any, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._cache: dict[str, tuple[float, AccessKey | None]] = {}

    @staticmethod
    def secret_name(key_id: str) -> str:
        return f"kubepie-key-{key_id.lower()}"

    async def add(self, key: AccessKey) -> None:
        # No owner reference: keys must outlive a redeployed gateway (its Deployment deleted
        # and created again would otherwise take every user's keys along).
        metadata: dict[str, Any] = {
            "name": self.secret_name(key.key_id),
            "labels": {KEY_LABEL: "true", USER_LABEL: label_value(key.username),
                       "app.kubernetes.io/managed-by": "kubepie-gateway"}}
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
        items = await _list(self._api, self._namespace, KEY_LABEL, username)
        keys = (_key(item) for item in items)
        return sorted((k for k in keys if k.username == username), key=lambda k: k.created)

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


class SecretLinkStore:
    """Share links, one Secret each, named after the token's hash (found without a list)."""

    def __init__(self, api: Any, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._cache: dict[str, tuple[float, ShareLink | None]] = {}

    @staticmethod
    def secret_name(digest: str) -> str:
        return f"kubepie-link-{digest[:40]}"

    async def add(self, link: ShareLink) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {
            "name": self.secret_name(link.token_hash),
            "labels": {LINK_LABEL: "true", USER_LABEL: label_value(link.owner.username),
                       "app.kubernetes.io/managed-by": "kubepie-gateway"},
            "annotations": {USES: "0"}}, "data": {"record": encode_record(link)}}
        await self._api.create_namespaced_secret(self._namespace, body)

    async def by_hash(self, digest: str) -> ShareLink | None:
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await self._api.read_namespaced_secret(
                self.secret_name(digest), self._namespace, _preload_content=False)
            link: ShareLink | None = _link(await response.json())
        except ApiException as exc:
            if exc.status != 404:
                raise
            link = None
        if link is not None and link.token_hash != digest:
            link = None  # a prefix collision of 160 bits: never, but never a wrong link
        self._cache[digest] = (time.monotonic() + CACHE_SECONDS, link)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return link

    async def for_user(self, username: str) -> list[ShareLink]:
        items = await _list(self._api, self._namespace, LINK_LABEL, username)
        links = (_link(item) for item in items)
        return sorted((link for link in links if link.owner.username == username),
                      key=lambda link: link.created)

    async def remove(self, link: ShareLink) -> bool:
        self._cache.pop(link.token_hash, None)
        try:
            await self._api.delete_namespaced_secret(self.secret_name(link.token_hash),
                                                     self._namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def count_use(self, link: ShareLink) -> None:
        """An annotation, counted from the last read: replicas may each miss the other's
        latest uses (the count is approximate across replicas)."""
        patch = {"metadata": {"annotations": {USES: str(link.uses + 1)}}}
        with contextlib.suppress(ApiException):
            await self._api.patch_namespaced_secret(self.secret_name(link.token_hash),
                                                    self._namespace, patch)

    def close(self) -> None:
        """The API client belongs to the backend, which closes it."""


async def _list(api: Any, namespace: str, kind: str, username: str) -> list[dict[str, Any]]:
    response = await api.list_namespaced_secret(
        namespace, label_selector=f"{kind}=true,{USER_LABEL}={label_value(username)}",
        _preload_content=False)
    return list((await response.json()).get("items") or [])


def _link(secret: dict[str, Any]) -> ShareLink:
    uses = int(((secret.get("metadata") or {}).get("annotations") or {}).get(USES, "0"))
    return decode_record(secret["data"]["record"], uses)


def _key(secret: dict[str, Any]) -> AccessKey:
    record = json.loads(base64.b64decode(secret["data"]["record"]))
    return AccessKey.from_record(record)
