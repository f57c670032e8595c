"""A Kubernetes list + watch of pods, kept going through errors, 410 Gone and timeouts.

Shared by the metrics agent (user pods on its node) and the kubepie gateway (file server
pods). It hands the raw JSON of the API (``raw_object``) to an index, so what tests feed in
is exactly what a real API server sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from services.runtime.retry import Backoff

log = logging.getLogger(__name__)


class PodIndex(Protocol):
    @property
    def pods(self) -> Any: ...

    def replace(self, pods: list[Mapping[str, Any]]) -> None: ...

    def apply(self, event_type: str, pod: Mapping[str, Any]) -> None: ...


class PodWatcher:
    """List, then watch from the list's resourceVersion; relist on 410 Gone or any error."""

    def __init__(self, api: Any, index: PodIndex, *, namespace: str, label_selector: str,
                 node: str = "", watch_timeout: int = 300,
                 request_timeout: float = 30.0) -> None:
        self._api = api
        self._index = index
        self._namespace = namespace
        self._selectors = {"label_selector": label_selector,
                           "field_selector": f"spec.nodeName={node}" if node else None}
        self._watch_timeout = watch_timeout
        # Client-side limits too: a connection that silently hangs must not stall the index.
        self._request_timeout = request_timeout

    async def run(self) -> None:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        backoff = Backoff(attempts=None, base=0.5, cap=30.0)
        failures = 0
        while True:
            try:
                version = await self._list()
                failures = 0
                while True:
                    stream = watch.Watch()
                    async with stream:
                        async for event in stream.stream(
                                *self._list_call(), resource_version=version,
                                timeout_seconds=self._watch_timeout,
                                _request_timeout=self._watch_timeout + self._request_timeout,
                                allow_watch_bookmarks=True, **self._kwargs()):
                            raw = event["raw_object"]
                            version = raw.get("metadata", {}).get("resourceVersion", version)
                            if event["type"] != "BOOKMARK":
                                self._index.apply(event["type"], raw)
            except asyncio.CancelledError:
                raise
            except ApiException as error:
                if error.status != 410:
                    failures += 1
                    delay = backoff.delay(failures)
                    log.warning("pod watch failed: %s %s; listing again in %.1f s",
                                error.status, error.reason, delay)
                    await asyncio.sleep(delay)
                # 410 Gone: our resourceVersion is too old; relist at once
            except Exception:
                # Not the API's answer (a bug, a broken stream, a bad object): say where,
                # and back off so it cannot spin.
                failures += 1
                delay = backoff.delay(failures)
                log.exception("pod watch failed unexpectedly; listing again in %.1f s", delay)
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        function, *args = self._list_call()
        response = await function(*args, _preload_content=False,
                                  _request_timeout=self._request_timeout, **self._kwargs())
        body = await response.json()
        self._index.replace(body.get("items") or [])
        log.info("listed %d user pod(s)", len(self._index.pods))
        return str(body.get("metadata", {}).get("resourceVersion", ""))

    def _list_call(self) -> tuple[Any, ...]:
        if self._namespace:
            return (self._api.list_namespaced_pod, self._namespace)
        return (self._api.list_pod_for_all_namespaces,)

    def _kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self._selectors.items() if v}

