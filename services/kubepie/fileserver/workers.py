"""Several processes of one file server on one port (``FILESERVER_PROCESSES``).

One Python process serves small files at what one core allows; a user pod with more cores
gets more by running several. They are forked after the privilege drop and before any event
loop or thread exists, each binds the port with SO_REUSEPORT (the kernel spreads connections
over them), and they share one lock table (``SharedLockManager``) in a private folder on tmpfs.
The first process is the parent: the kubelet's SIGTERM reaches it, and it stops the others
after its own graceful stop; a worker whose parent is gone is told by the kernel. A worker
that dies is not replaced: the kernel hands new connections to the sockets still open.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import select
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from services.kubepie.fileserver.locks import SharedLockManager
from services.runtime.parent_death import signal_on_parent_death

log = logging.getLogger(__name__)

_orphaned = threading.Event()  # set in a worker once the kernel said its parent died
# tmpfs in every container, writable with readOnlyRootFilesystem; the folder in it is mkdtemp's
# (0700, a random name), so no other user can reach or pre-create it.
SHARED_MEMORY = Path("/dev/shm")  # noqa: S108


class Workers:
    def __init__(self) -> None:
        self.children: list[int] = []
        self.lock_folder: Path | None = None
        self.is_parent = True
        self._presence: int | None = None
        self._parent: int | None = None  # a worker's pidfd of its parent

    @property
    def lock_table(self) -> Path | None:
        return self.lock_folder / "locks.sqlite" if self.lock_folder else None

    def start(self, processes: int) -> None:
        """Fork ``processes - 1`` workers; every process returns from here and serves."""
        if processes <= 1:
            return
        where = SHARED_MEMORY if os.access(SHARED_MEMORY, os.W_OK | os.X_OK) else None
        self.lock_folder = Path(tempfile.mkdtemp(prefix="kubepie-fileserver-", dir=where))
        (self.lock_folder / "present").touch(mode=0o600)
        SharedLockManager.create(self.lock_folder / "locks.sqlite")
        parent = os.getpid()
        # What is imported so far stays shared copy-on-write: the collector never walks (and
        # so never writes to) the objects frozen here, in any process.
        gc.freeze()
        for _ in range(processes - 1):
            pid = os.fork()
            if pid == 0:
                self.is_parent = False
                self.children = []
                self._parent = os.pidfd_open(parent)
                _die_with_parent(parent)
                break
            self.children.append(pid)
        self._presence = _hold_shared(self.lock_folder / "present")
        # Outside the event loop's own handling (before it starts, and while it shuts down):
        # a SIGTERM leaves through main's cleanup, not on the spot (the default action).
        signal.signal(signal.SIGTERM, _stop_before_serving)

    def stop(self, timeout: float = 10.0) -> None:
        """After this process's own graceful stop. The parent (which the kubelet's SIGTERM
        reaches) sends SIGTERM to the workers and SIGKILL after ``timeout``. Whichever process
        leaves last removes the lock table: the parent, or the workers when it was killed."""
        if self.lock_folder is None:
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already
        if self.is_parent:
            for pid in self.children:
                _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for pid in self.children:
                while not _reaped(pid):
                    if time.monotonic() > deadline:
                        _signal(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        log.warning("worker did not stop in time; killed", extra={"pid": pid})
                        break
                    time.sleep(0.05)
            self.children = []
        self._leave()

    def _leave(self) -> None:
        """Every process holds a shared flock on ``present`` while it serves; one that can
        take it exclusively after letting go of its own is the last, and removes the
        folder (two doing so at once is harmless)."""
        if self.lock_folder is None or self._presence is None:
            return
        if _orphaned.is_set() and self._parent is not None:
            # Told of the parent's death while its last threads may still hold its files
            # (and its flock): wait until it is gone for good.
            select.select([self._parent], [], [], 5.0)
        os.close(self._presence)
        self._presence = None
        try:
            last = os.open(self.lock_folder / "present", os.O_RDONLY)
        except FileNotFoundError:
            return  # another process was last
        try:
            fcntl.flock(last, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # others still serve
        finally:
            os.close(last)
        shutil.rmtree(self.lock_folder, ignore_errors=True)


def _stop_before_serving(number: int, _: object) -> None:
    raise SystemExit(0)


def _hold_shared(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _die_with_parent(parent: int) -> None:
    """The kernel signals a worker when its parent dies, once per thread of the dying parent:
    SIGUSR2, turned into one SIGTERM here (the usual graceful stop)."""
    signal.signal(signal.SIGUSR2, _parent_died)
    signal_on_parent_death(signal.SIGUSR2)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGUSR2)


def _parent_died(number: int, _: object) -> None:
    _orphaned.set()
    signal_on_parent_death(0)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    os.kill(os.getpid(), signal.SIGTERM)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)
