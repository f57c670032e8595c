"""``jupyterhub-sidecars kubepie fileserver``: settings, privilege drop, serve."""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from services.kubepie.fileserver.app import build_app
from services.kubepie.fileserver.settings import FileserverSettings
from services.kubepie.fileserver.workers import Workers
from services.runtime.logs import configure_logging
from services.runtime.privileges import drop_privileges
from services.runtime.settings import run_service_main
from services.runtime.webapp import run_service, until_stopped


def main(args: argparse.Namespace | None) -> int:
    workers = Workers()

    def prepare(settings: FileserverSettings) -> None:
        _drop_privileges(settings)
        workers.start(settings.processes)  # after the drop: the workers are the user too

    async def run(settings: FileserverSettings) -> int:
        return await _run(settings, workers)

    try:
        return run_service_main("kubepie fileserver", FileserverSettings, args, run,
                                prepare=prepare)
    finally:
        workers.stop()  # once the event loop is gone: nothing can cancel it


def _drop_privileges(settings: FileserverSettings) -> None:
    """Before anything is served or read: the user's ids, never root's."""
    drop_privileges(settings.uid, settings.gid, settings.group_ids,
                    setting="FILESERVER_UID and FILESERVER_GID",
                    refusal="refusing to serve files as root")


async def _run(settings: FileserverSettings, workers: Workers) -> int:
    log = configure_logging("kubepie-fileserver", settings.log_level)
    # Imported above, before the privilege drop: after it, the user may not be able to read
    # Python's own library (a root-only virtualenv), so nothing may be imported lazily then.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="fileserver-long"))
    app = build_app(settings, CollectorRegistry(), shared_locks=workers.lock_table)
    log.info("serving", extra={"mounts": {m.url: m.root for m in settings.mount_table},
                               "read_only": [m.url for m in settings.mount_table if m.read_only]})

    return await run_service(app, until_stopped, host=settings.host, port=settings.port,
                             reuse_port=settings.processes > 1)
