"""The web side every service has, and the process lifecycle around it.

``run_service`` serves ``/healthz`` and ``/metrics`` (plus the service's own routes) on one
port, runs the service's main coroutine, and stops both cleanly on SIGTERM/SIGINT: Kubernetes
sends SIGTERM and waits ``terminationGracePeriodSeconds`` before killing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.runtime.privileges import drop_privileges
from services.runtime.settings import ProcessIsolation

log = logging.getLogger(__name__)

HealthCheck = Callable[[], bool]
MetricsHandler = Callable[[web.Request], Coroutine[Any, Any, web.Response]]
METRICS_HANDLER: web.AppKey[MetricsHandler] = web.AppKey("metrics_handler")


def isolate(settings: ProcessIsolation, setting: str) -> Callable[[], None]:
    """``before_serving`` for a sidecar: switch to its ``run_as`` ids (when root)."""
    def drop() -> None:
        ids = settings.isolation_ids()
        if ids is not None:
            drop_privileges(*ids, setting=setting)
            log.info("running as", extra={"uid": ids[0], "gid": ids[1]})
    return drop


def restrict_socket(path: Path, owner: int | None) -> None:
    """A UNIX socket's mode is its access control: 0600, and the owner's (as root)."""
    path.chmod(0o600)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner, -1)


def make_app(registry: CollectorRegistry, healthy: HealthCheck | None = None,
             exposition: Callable[[], bytes] | None = None,
             client_max_size: int = 64 * 1024,
             details: Callable[[], dict[str, Any]] | None = None) -> web.Application:
    """``exposition``, when given, renders ``/metrics`` instead of the registry alone;
    ``details`` adds fields to ``/healthz``'s answer (what an operator should know)."""
    app = web.Application(client_max_size=client_max_size)
    render = exposition or (lambda: bytes(generate_latest(registry)))

    async def healthz(_: web.Request) -> web.Response:
        ok = healthy() if healthy else True
        body: dict[str, Any] = {"ok": ok, **(details() if details else {})}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        # Collectors may read files (the metrics agent reads hundreds): keep them off the loop.
        body = await asyncio.to_thread(render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app[METRICS_HANDLER] = metrics
    return app


async def until_stopped() -> int:
    """The main coroutine of a service that only serves: it ends with the stop signal."""
    await asyncio.Event().wait()
    return 0


async def run_service(
    app: web.Application,
    main: Callable[[], Coroutine[Any, Any, int]],
    *,
    host: str,
    port: int,
    shutdown_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    unix_socket: Path | None = None,
    socket_owner: int | None = None,
    before_serving: Callable[[], None] | None = None,
    metrics_port: int = 0,
    reuse_port: bool = False,
) -> int:
    """Serve ``app`` and run ``main`` until it returns or a stop signal arrives.

    With ``unix_socket`` the service listens there instead of ``host:port`` (mode 0600, owned
    by ``socket_owner``: the one user who may connect). ``before_serving`` runs once the
    socket is bound, before anything is served: where a service started as root drops its
    privileges. ``metrics_port`` (0: none) serves ``/metrics`` alone on all addresses, for a
    Prometheus outside the pod while the service itself stays pod-local. ``reuse_port``: other
    processes of the same user may listen on the port too (SO_REUSEPORT; the kernel spreads
    connections over them). Returns ``main``'s
    exit status, or 0 after a signal (a requested stop is not an error).
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site: web.BaseSite
    if unix_socket is not None:
        await asyncio.to_thread(unix_socket.unlink, missing_ok=True)
        site = web.UnixSite(runner, str(unix_socket))
        await site.start()
        await asyncio.to_thread(restrict_socket, unix_socket, socket_owner)
        log.info("listening", extra={"socket": str(unix_socket)})
    else:
        site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context,
                           reuse_port=reuse_port or None)
        await site.start()
        log.info("listening", extra={"host": host, "port": port})
    metrics_runner: web.AppRunner | None = None
    if metrics_port:
        metrics_only = web.Application()
        metrics_only.router.add_get("/metrics", app[METRICS_HANDLER])
        metrics_runner = web.AppRunner(metrics_only, access_log=None, handle_signals=False)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, "0.0.0.0", metrics_port,
                          reuse_address=True).start()
        log.info("metrics listening", extra={"port": metrics_port})
    if before_serving is not None:
        before_serving()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # What handled the signals before (a process's own, e.g. the file server's workers'),
    # put back afterwards instead of the default action.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        loop.add_signal_handler(sig, stop.set)

    main_task = asyncio.create_task(main(), name="service-main")
    stop_task = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        done, _ = await asyncio.wait({main_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if main_task in done:
            return int(main_task.result())
        log.info("stop signal received, shutting down")
        main_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(main_task, shutdown_timeout)
        return 0
    finally:
        stop_task.cancel()
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
