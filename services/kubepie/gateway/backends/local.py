"""The embedded backend: one file server process per identity, on loopback.

Run as root, the gateway starts each file server as root and the file server drops to the
user's uid, gid and groups before it serves anything (``kubepie fileserver``'s own rule).
Each server gets a random token and answers nobody else, so other local users cannot talk
to it directly. The servers are forked from one process that imported the file server once
(``forkserver.py``): a start costs milliseconds and the imported code is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from services.identity.claims import Identity
from services.kubepie.gateway.servers import Endpoint, StartFailed
from services.storage.definition import StorageDefinition

log = logging.getLogger(__name__)
FORKSERVER = "services.kubepie.gateway.backends.forkserver"


class ForkServer:
    """The gateway's side of forkserver.py: start servers, learn when they end."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self._started: asyncio.Queue[int] = asyncio.Queue()
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def spawn(self, env: dict[str, str]) -> int:
        async with self._lock:  # one request at a time: answers come in request order
            process, started = await self._running()
            assert process.stdin is not None
            process.stdin.write(json.dumps({"env": env}).encode() + b"\n")
            await process.stdin.drain()
            pid = await asyncio.wait_for(started.get(), 30)
        if pid < 0:
            raise StartFailed("the file server fork server is not running")
        self.exited(pid)
        return pid

    def exited(self, pid: int) -> asyncio.Future[int]:
        """Resolves with the exit status of ``pid``."""
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    def forget(self, pid: int) -> None:
        """``pid`` ended and was noted: its number may now belong to anyone."""
        self._exits.pop(pid, None)

    async def _running(self) -> tuple[asyncio.subprocess.Process, asyncio.Queue[int]]:
        """The fork server (started if it is not running) and the queue of its answers."""
        if self.process is not None and self.process.returncode is None \
                and self._reader is not None and not self._reader.done():
            return self.process, self._started
        # A bare environment: nothing of the gateway's settings reaches the servers' memory.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        log_fd = os.dup(sys.stdout.fileno())
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-m", FORKSERVER, str(log_fd), env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                pass_fds=(log_fd,), start_new_session=True)
        finally:
            os.close(log_fd)
        self._started = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(self.process, self._started))
        return self.process, self._started

    async def _read(self, process: asyncio.subprocess.Process,
                    started: asyncio.Queue[int]) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            message: dict[str, Any] = json.loads(line)
            if "pid" in message:
                started.put_nowait(int(message["pid"]))
            else:
                future = self.exited(int(message["exited"]))
                if not future.done():
                    future.set_result(int(message["status"]))
        # The fork server is gone (it stops its children when it ends): nothing it started
        # is tracked any more, and a start in progress fails.
        status = await process.wait()
        log.error("the file server fork server exited", extra={"status": status})
        started.put_nowait(-1)
        for pid, future in list(self._exits.items()):
            if not future.done():  # a child it may not have stopped: never one that ended
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                future.set_result(-signal.SIGKILL)

    async def close(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()  # end of input: it stops what is left and exits
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 15)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await self._reader


class LocalBackend:
    name = "local"

    def __init__(self, storage: StorageDefinition, *, log_level: str = "INFO",
                 stop_timeout: float = 10.0, processes: int = 1) -> None:
        self._storage = storage
        self._log_level = log_level
        self._processes = processes
        self._stop_timeout = stop_timeout
        self._pids: dict[str, int] = {}
        self._forks = ForkServer()
        self._tokens = Path(tempfile.mkdtemp(prefix="kubepie-tokens-"))  # 0700, ours alone
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
        token_file = self._tokens / f"token-{port}"
        await asyncio.to_thread(_write_private, token_file, token)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "FILESERVER_MOUNTS": ",".join(f"{n}={f}" for n, f, _ in mounts),
               "FILESERVER_READ_ONLY": ",".join(n for n, _, read_only in mounts if read_only),
               "FILESERVER_HOST": "127.0.0.1", "FILESERVER_PORT": str(port),
               "FILESERVER_ACCESS_TOKEN_FILE": str(token_file),
               "FILESERVER_LOG_LEVEL": self._log_level,
               "FILESERVER_PROCESSES": str(self._processes)}
        if os.geteuid() == 0:
            env |= {"FILESERVER_UID": str(identity.uid), "FILESERVER_GID": str(identity.gid),
                    "FILESERVER_GROUPS": ",".join(map(str, identity.gids))}
        try:
            pid = await self._forks.spawn(env)
            exited = self._forks.exited(pid)
            endpoint = Endpoint(identity, f"http://127.0.0.1:{port}", token, f"pid {pid}")
            self._pids[endpoint.name] = pid
            waiter = asyncio.create_task(self._watch(pid, endpoint))
            self._waiters.add(waiter)
            waiter.add_done_callback(self._waiters.discard)
            while not endpoint.dead.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    if (await self._http.get(f"{endpoint.url}/healthz")).status_code == 200:
                        return endpoint
                await asyncio.sleep(0.01)
        finally:
            token_file.unlink(missing_ok=True)  # read at its start; it is in memory now
        raise StartFailed(f"the file server exited with status "
                          f"{exited.result()} (see the gateway's log)")

    async def _watch(self, pid: int, endpoint: Endpoint) -> None:
        status = await self._forks.exited(pid)
        self._forks.forget(pid)
        self._pids.pop(endpoint.name, None)
        endpoint.dead.set()
        log.info("file server exited", extra={"user": endpoint.identity.username,
                                              "server": endpoint.name, "status": status})

    def note_use(self, endpoint: Endpoint) -> None:
        """Only this gateway routes to its processes: the idle clock is kept in memory."""

    async def stop(self, endpoint: Endpoint) -> None:
        pid = self._pids.get(endpoint.name)
        if pid is None:
            return
        exited = self._forks.exited(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self._stop_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await exited

    async def close(self) -> None:
        await self._forks.close()
        await self._http.aclose()
        shutil.rmtree(self._tokens, ignore_errors=True)

    def _existing(self, identity: Identity) -> list[tuple[str, str, bool]]:
        """(name, folder, read-only) of the identity's folders that exist here (a user may
        have no folder in some group share)."""
        found = []
        for folder in self._storage.folders(identity):
            local = self._storage.local_folder(folder)
            if Path(local).is_dir():
                found.append((folder.name, local, folder.read_only))
        return found




def _write_private(path: Path, text: str) -> None:
    """``text`` into a new file only this process's user can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
