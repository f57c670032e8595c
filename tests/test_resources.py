"""What is opened is closed, tables do not grow without bound, failures are visible."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from harness.tools import REPO
from services.identity.claims import Identity
from services.kubepie.gateway.servers import Endpoint, UserServers
from services.runtime.kube_watch import PodWatcher


class InstantBackend:
    name = "test"

    def __init__(self) -> None:
        self.closed = False

    async def start(self, identity: Identity) -> Endpoint:
        await asyncio.sleep(0.01)
        return Endpoint(identity, "http://127.0.0.1:9", "t", identity.username)

    async def stop(self, endpoint: Endpoint) -> None:
        endpoint.dead.set()

    def note_use(self, endpoint: Endpoint) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


async def test_the_start_lock_table_holds_only_starts_in_progress() -> None:
    """One entry per identity ever seen was kept before: 1,000 users, 1,000 locks forever."""
    backend = InstantBackend()
    servers = UserServers(backend, idle_timeout=0.0, start_timeout=5)  # type: ignore[arg-type]
    identities = [Identity(f"user{n}", 2000 + n, 2000 + n) for n in range(300)]
    # concurrent first requests of each identity still start one server each
    endpoints = await asyncio.gather(*(servers.endpoint(i) for i in identities for _ in (1, 2)))
    assert len({id(e) for e in endpoints}) == 300
    assert servers.starting == 0
    assert await servers.stop_idle() == 300
    await servers.close()
    assert backend.closed


async def test_a_crowd_of_first_requests_reaches_the_backend_a_few_at_a_time() -> None:
    """1,000 users at once must not become 1,000 pod creations in flight at the API server."""
    in_flight, most = 0, 0

    class Counting(InstantBackend):
        async def start(self, identity: Identity) -> Endpoint:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await super().start(identity)
            finally:
                in_flight -= 1

    servers = UserServers(Counting(), idle_timeout=0.0, start_timeout=30,  # type: ignore[arg-type]
                          max_starting=7)
    identities = [Identity(f"user{n}", 3000 + n, 3000 + n) for n in range(200)]
    endpoints = await asyncio.gather(*(servers.endpoint(i) for i in identities))
    assert len(endpoints) == 200 and most == 7
    # Waiting for a slot counts against the start timeout: a start never waits forever.
    from services.kubepie.gateway.servers import StartFailed

    class Slow(InstantBackend):
        async def start(self, identity: Identity) -> Endpoint:
            await asyncio.sleep(0.3)
            return await super().start(identity)

    slow = UserServers(Slow(), idle_timeout=0.0, start_timeout=0.5,  # type: ignore[arg-type]
                       max_starting=1)
    results = await asyncio.gather(*(slow.endpoint(i) for i in identities[:3]),
                                   return_exceptions=True)
    assert sum(isinstance(r, StartFailed) for r in results) >= 1
    assert slow.start_failures >= 1
    await servers.close()
    await slow.close()


async def test_file_server_starts_and_failed_starts_are_counted_for_the_alerts() -> None:
    """What deploy/metrics/alerts.yaml's KubepieFileServersFailToStart reads."""
    from prometheus_client import CollectorRegistry, generate_latest

    from services.kubepie.gateway.app import Metrics
    from services.kubepie.gateway.servers import StartFailed

    class Flaky(InstantBackend):
        async def start(self, identity: Identity) -> Endpoint:
            if identity.username == "slow":
                await asyncio.sleep(10)
            if identity.username == "broken":
                raise RuntimeError("pod refused by the webhook")
            return await super().start(identity)

    servers = UserServers(Flaky(), idle_timeout=0.0, start_timeout=0.2)  # type: ignore[arg-type]
    registry = CollectorRegistry()
    Metrics(registry, servers)
    await servers.endpoint(Identity("ok", 2001, 2001))
    with pytest.raises(StartFailed):
        await servers.endpoint(Identity("slow", 2002, 2002))
    with pytest.raises(RuntimeError):
        await servers.endpoint(Identity("broken", 2003, 2003))
    text = generate_latest(registry).decode()
    assert "jupyterhub_sidecars_kubepie_gateway_file_server_starts_total 1.0" in text
    assert "jupyterhub_sidecars_kubepie_gateway_file_server_start_failures_total 2.0" in text
    await servers.close()


async def test_the_kubernetes_backend_closes_its_api_client() -> None:
    from services.kubepie.gateway.backends.kubernetes import KubernetesBackend
    from services.kubepie.gateway.backends.podspec import PodSettings
    from services.storage.definition import StorageDefinition

    class Client:
        closed = False

        async def close(self) -> None:
            self.closed = True

    client = Client()
    backend = KubernetesBackend(
        object(), pods=PodSettings(namespace="ns", image="i"),
        storage=StorageDefinition.parse({"volumes": [{"name": "v", "emptyDir": {}}],
                                         "mounts": [{"name": "home", "volume": "v"}]}),
        identity_key=None, token_secret=b"s", owner=None, idle_timeout=60,
        api_client=client)
    await backend.close()
    assert client.closed


async def test_an_unexpected_pod_watch_error_is_logged_with_its_traceback_and_backs_off(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    class BrokenApi:
        calls = 0

        async def list_namespaced_pod(self, *args: Any, **kwargs: Any) -> Any:
            BrokenApi.calls += 1
            raise KeyError("metadata")  # a bug, not an ApiException

    class Index:
        pods: dict[str, Any] = {}  # noqa: RUF012 - a stand-in
        def replace(self, pods: Any) -> None: ...

        def apply(self, event_type: str, pod: Any) -> None: ...

    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    watcher = PodWatcher(BrokenApi(), Index(), namespace="ns", label_selector="a=b")
    with caplog.at_level(logging.ERROR, logger="services.runtime.kube_watch"):
        task = asyncio.ensure_future(watcher.run())
        while len(delays) < 5:
            await real_sleep(0)
        task.cancel()
    records = [r for r in caplog.records if "pod watch failed unexpectedly" in r.message]
    assert records and records[0].exc_info is not None  # the traceback is in the log
    assert delays[:5] == sorted(delays[:5]) or max(delays[:5]) > delays[0]  # backing off
    assert all(d > 0 for d in delays)


def test_every_logger_is_in_one_hierarchy() -> None:
    """``getLogger(__name__)`` everywhere: ``services.<module>``, nothing else of ours."""
    literal = re.compile(r'getLogger\(\s*f?["\'](?!httpx|aiohttp|services\.|\{__name__\})')
    offenders = [str(p.relative_to(REPO)) for p in Path(REPO / "services").rglob("*.py")
                 if literal.search(p.read_text())]
    assert offenders == []
