"""Each identity's file server: started on first use, shared by its requests, stopped when
idle, replaced when it dies. The backends only know how to start, stop and watch one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from services.identity.claims import Identity

log = logging.getLogger(__name__)


class StartFailed(Exception):
    """The file server did not become ready; the message is for the log and the client."""


@dataclass
class Endpoint:
    """A running file server: where it listens and the token it wants from the gateway."""

    identity: Identity
    url: str
    token: str
    name: str                       # process id or pod name, for logs
    last_used: float = field(default_factory=time.monotonic)
    active: int = 0                 # requests in flight (never idle while > 0)
    dead: asyncio.Event = field(default_factory=asyncio.Event)


class Backend(Protocol):
    name: str

    async def start(self, identity: Identity) -> Endpoint:
        """Start (or find) the identity's server and wait until it is ready."""

    async def stop(self, endpoint: Endpoint) -> None: ...

    def note_use(self, endpoint: Endpoint) -> None:
        """Called after each request (the kubernetes backend shares it with other replicas)."""

    async def close(self) -> None: ...


class UserServers:
    def __init__(self, backend: Backend, *, idle_timeout: float, start_timeout: float,
                 max_starting: int = 20) -> None:
        self.backend = backend
        # Starts in flight at once: a crowd of first requests (a course's 1,000 students at
        # 9:00) reaches the backend, and the Kubernetes API server, this many at a time.
        self._start_slots = asyncio.Semaphore(max_starting)
        self._idle_timeout = idle_timeout
        self._start_timeout = start_timeout
        self._running: dict[Identity, Endpoint] = {}
        # One lock per identity *being started*, with how many requests hold or wait for it;
        # removed by the last one, so the table does not grow with every user ever seen.
        self._starting: dict[Identity, tuple[asyncio.Lock, list[int]]] = {}
        self.starts = 0           # file servers started (the metrics count them)
        self.start_failures = 0   # starts that failed or timed out

    @property
    def running(self) -> dict[Identity, Endpoint]:
        return dict(self._running)

    async def endpoint(self, identity: Identity) -> Endpoint:
        current = self._running.get(identity)
        if current is not None and not current.dead.is_set():
            return current
        lock, users = self._starting.setdefault(identity, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:  # concurrent first requests start one server
                return await self._start_once(identity)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._starting[identity]

    async def _start_in_slot(self, identity: Identity) -> Endpoint:
        async with self._start_slots:  # waiting here counts against the start timeout
            return await self.backend.start(identity)

    @property
    def starting(self) -> int:
        """Identities with a start in progress (the lock table's size)."""
        return len(self._starting)

    async def _start_once(self, identity: Identity) -> Endpoint:
        current = self._running.get(identity)
        if current is not None and not current.dead.is_set():
            return current
        if current is not None:
            log.warning("file server died; starting a new one",
                        extra={"user": identity.username, "server": current.name})
        started = time.monotonic()
        try:
            endpoint = await asyncio.wait_for(self._start_in_slot(identity),
                                              self._start_timeout)
        except TimeoutError:
            self.start_failures += 1
            raise StartFailed(f"the file server was not ready within "
                              f"{self._start_timeout:.0f} s") from None
        except Exception:
            self.start_failures += 1
            raise
        self.starts += 1
        log.info("file server started", extra={
            "user": identity.username, "server": endpoint.name, "url": endpoint.url,
            "seconds": round(time.monotonic() - started, 3)})
        self._running[identity] = endpoint
        return endpoint

    def release(self, endpoint: Endpoint) -> None:
        """A request to ``endpoint`` ended."""
        endpoint.active -= 1
        endpoint.last_used = time.monotonic()
        self.backend.note_use(endpoint)

    def forget(self, endpoint: Endpoint) -> None:
        """The endpoint failed (connection refused): the next request starts a new one."""
        endpoint.dead.set()
        if self._running.get(endpoint.identity) is endpoint:
            del self._running[endpoint.identity]

    async def stop_idle(self) -> int:
        now = time.monotonic()
        idle = [e for e in self._running.values()
                if e.active == 0 and now - e.last_used >= self._idle_timeout]
        for endpoint in idle:
            self.forget(endpoint)
            log.info("stopping idle file server",
                     extra={"user": endpoint.identity.username, "server": endpoint.name})
            await self.backend.stop(endpoint)
        return len(idle)

    async def reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, min(30.0, self._idle_timeout / 4)))
            try:
                await self.stop_idle()
            except Exception:
                log.exception("stopping idle file servers failed; trying again later")

    async def close(self) -> None:
        for endpoint in list(self._running.values()):
            self.forget(endpoint)
            with contextlib.suppress(Exception):
                await self.backend.stop(endpoint)
        await self.backend.close()
