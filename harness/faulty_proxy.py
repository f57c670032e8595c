"""A reverse proxy in front of the real hub that breaks on demand, the ways a hub breaks.

``fail`` chooses what happens to the requests it matches (by method): ``"refused"`` closes the
listening socket (connection refused, for every request), ``"timeout"`` holds the request
without answering, ``503``/``403`` answer that status as JupyterHub would; ``None`` forwards.
It runs its own event loop in a thread, so synchronous tests can drive it.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from harness.hub import free_port

Fault = str | int | None


@dataclass
class FaultyProxy:
    upstream: str                     # e.g. http://127.0.0.1:8081
    port: int = field(default_factory=free_port)
    fault: Fault = None
    methods: frozenset[str] = frozenset({"PATCH"})
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def set_fault(self, fault: Fault, methods: tuple[str, ...] = ("PATCH",)) -> None:
        """From now on, fail ``methods`` with ``fault`` (``None``: forward everything)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._set(fault, frozenset(methods)),
                                         self._loop).result(10)

    async def _set(self, fault: Fault, methods: frozenset[str]) -> None:
        listening = self._site is not None
        self.fault, self.methods = fault, methods
        if fault == "refused" and listening:
            assert self._site is not None
            await self._site.stop()
            self._site = None
        elif fault != "refused" and not listening:
            await self._listen()

    def _serve(self, ready: Future[None]) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._setup())
        ready.set_result(None)
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)  # requests still held ("timeout")
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _setup(self) -> None:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        self._http = aiohttp.ClientSession(auto_decompress=False)
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _shutdown(self) -> None:
        await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.fault is not None and request.method in self.methods:
            if self.fault == "timeout":
                await asyncio.sleep(3600)
            status = int(self.fault)
            self.seen.append((request.method, request.path, status))
            return web.json_response({"status": status, "message": "injected fault"},
                                     status=status)
        body = await request.read()
        headers: dict[str, Any] = {k: v for k, v in request.headers.items()
                                   if k.lower() not in ("host", "content-length")}
        async with self._http.request(request.method, self.upstream + request.path_qs,
                                      headers=headers, data=body) as upstream:
            data = await upstream.read()
            self.seen.append((request.method, request.path, upstream.status))
            return web.Response(status=upstream.status, body=data, headers={
                "Content-Type": upstream.headers.get("Content-Type", "application/json")})
