"""The embedded backend: one file server process per identity, on loopback.

Run as root, the gateway starts each file server as root and the file server drops to the
user's uid, gid and groups before it serves anything (``kubepie fileserver``'s own rule).
Each server gets a random token and answers nobody else, so other local users cannot talk
to it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from pathlib import Path

import httpx

from services.identity.claims import Identity
from services.kubepie.gateway.servers import Endpoint, StartFailed
from services.storage.definition import StorageDefinition

log = logging.getLogger(__name__)


class LocalBackend:
    name = "local"

    def __init__(self, storage: StorageDefinition, *, log_level: str = "INFO",
                 stop_timeout: float = 10.0) -> None:
        self._storage = storage
        self._log_level = log_level
        self._stop_timeout = stop_timeout
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._waiters: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=2)
        if os.geteuid() != 0:
            log.warning("not running as root: every file server runs as uid %d, not as "
                        "the user's uid", os.geteuid())

    async def start(self, identity: Identity) -> Endpoint:
        mounts = await asyncio.to_thread(self._existing, identity)
        if not mounts:
            raise StartFailed(f"none of {identity.username}'s folders exist")
        port, token = _free_port(), secrets.token_urlsafe(32)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "FILESERVER_MOUNTS": ",".join(f"{n}={f}" for n, f, _ in mounts),
               "FILESERVER_READ_ONLY": ",".join(n for n, _, read_only in mounts if read_only),
               "FILESERVER_HOST": "127.0.0.1", "FILESERVER_PORT": str(port),
               "FILESERVER_ACCESS_TOKEN": token, "FILESERVER_LOG_LEVEL": self._log_level}
        if os.geteuid() == 0:
            env |= {"FILESERVER_UID": str(identity.uid), "FILESERVER_GID": str(identity.gid),
                    "FILESERVER_GROUPS": ",".join(map(str, identity.gids))}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services", "kubepie", "fileserver", env=env,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        endpoint = Endpoint(identity, f"http://127.0.0.1:{port}", token, f"pid {process.pid}")
        self._processes[endpoint.name] = process
        waiter = asyncio.create_task(self._watch(process, endpoint))
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)
        while not endpoint.dead.is_set():
            with contextlib.suppress(httpx.HTTPError):
                if (await self._http.get(f"{endpoint.url}/healthz")).status_code == 200:
                    return endpoint
            await asyncio.sleep(0.05)
        raise StartFailed(f"the file server exited with status {process.returncode} "
                          "(see the gateway's log)")

    async def _watch(self, process: asyncio.subprocess.Process, endpoint: Endpoint) -> None:
        status = await process.wait()
        self._processes.pop(endpoint.name, None)
        endpoint.dead.set()
        log.info("file server exited", extra={"user": endpoint.identity.username,
                                              "server": endpoint.name, "status": status})

    def note_use(self, endpoint: Endpoint) -> None:
        """Only this gateway routes to its processes: the idle clock is kept in memory."""

    async def stop(self, endpoint: Endpoint) -> None:
        process = self._processes.get(endpoint.name)
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._stop_timeout)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def close(self) -> None:
        await self._http.aclose()

    def _existing(self, identity: Identity) -> list[tuple[str, str, bool]]:
        """(name, folder, read-only) of the identity's folders that exist here (a user may
        have no folder in some group share)."""
        found = []
        for folder in self._storage.folders(identity):
            local = self._storage.local_folder(folder)
            if Path(local).is_dir():
                found.append((folder.name, local, folder.read_only))
        return found




def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
