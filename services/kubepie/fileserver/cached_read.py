"""Small files read on the event loop, where the kernel promises that nothing will wait.

A GET of a 4 KiB file spends more on the hop to a worker thread and back than on the open,
the stat and the read together (+28 % requests per second without the hop, measured here).
The loop must still never wait on a disk or a server, so this path asks the kernel for
exactly that promise and gives up at once when it cannot have it:

- ``openat2(2)`` with ``RESOLVE_CACHED`` fails with EAGAIN rather than read a folder from
  disk; ``RESOLVE_BENEATH`` and ``RESOLVE_NO_MAGICLINKS`` keep the path inside the mount's
  folder in the kernel (no ``..``, no absolute symlink, no ``/proc`` link can lead out);
  ``RESOLVE_NO_XDEV`` keeps it on the mount's own filesystem,
- which must be a local one (ext4, xfs, btrfs, tmpfs, overlay, …): on NFS or FUSE even an
  open or a stat of an open file can ask a server, so such mounts never take this path,
- ``preadv2(2)`` with ``RWF_NOWAIT`` reads only what the page cache already holds.

Anything else — a miss in the caches, a symlink the kernel would not follow beneath the
mount, a folder, a FIFO, a file above ``LOOP_READ_MAX``, a kernel before 5.12 or a seccomp
profile without openat2 — is answered None, and the request takes the worker-thread path,
which judges it exactly as it always did (``fsops.open_for_read``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import stat
import sys
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from services.kubepie.fileserver.fsops import OPEN_FLAGS, OpenedFile
from services.kubepie.fileserver.mounts import Mount

log = logging.getLogger(__name__)

LOOP_READ_MAX = 64 * 1024  # larger small files are read in a worker thread, as before
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "tmpfs",
                               "ramfs", "overlay"})

SYS_OPENAT2 = 437  # the same number on every Linux architecture since 5.1
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
RESOLVE_CACHED = 0x20
RESOLVE = RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH | RESOLVE_CACHED


class OpenHow(ctypes.Structure):
    """``struct open_how`` of <linux/openat2.h>."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class CachedReads:
    """The mounts' folders held open, for reads that cannot wait (see the module's doc)."""

    def __init__(self, mounts: Iterable[Mount], registry: CollectorRegistry | None = None) -> None:
        self._roots: dict[str, int] = {}  # mount root → an O_PATH descriptor of it
        self.hits = Counter("jupyterhub_sidecars_kubepie_fileserver_loop_reads",
                            "Small files read from the page cache on the event loop (the rest "
                            "are read in worker threads).", registry=registry)
        self._how = OpenHow(OPEN_FLAGS, 0, RESOLVE)
        self._syscall = None
        if sys.platform != "linux" or not hasattr(os, "RWF_NOWAIT"):
            return
        syscall = ctypes.CDLL(None, use_errno=True).syscall
        syscall.restype = ctypes.c_long
        syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p,
                            ctypes.POINTER(OpenHow), ctypes.c_size_t]
        self._syscall = syscall
        for mount in mounts:
            self._hold(mount.root)

    def _hold(self, root: str) -> None:
        try:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        kind = filesystem_type(fd)
        if kind not in LOCAL_FILESYSTEMS or not self._works(fd):
            log.info("small files read in threads only", extra={"mount": root,
                                                                "filesystem": kind})
            os.close(fd)
            return
        self._roots[root] = fd

    def _works(self, fd: int) -> bool:
        """openat2 with these flags exists here (kernel ≥ 5.12, not filtered by seccomp)."""
        how = OpenHow(os.O_PATH | os.O_CLOEXEC, 0, RESOLVE)
        assert self._syscall is not None
        opened = self._syscall(SYS_OPENAT2, fd, b".", ctypes.byref(how), ctypes.sizeof(how))
        if opened < 0:
            return False
        os.close(opened)
        return True

    @property
    def active(self) -> bool:
        return bool(self._roots)

    def read(self, mount: Mount, below: tuple[str, ...]) -> OpenedFile | None:
        """The whole file at ``below`` (segments under the mount), or None: use a thread."""
        root = self._roots.get(mount.root)
        if root is None or not below or self._syscall is None:
            return None
        path = os.fsencode("/".join(below))
        if b"\0" in path:
            return None  # C would read it as a shorter path
        how = self._how
        fd = self._syscall(SYS_OPENAT2, root, path, ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > LOOP_READ_MAX:
                return None
            buffer = bytearray(st.st_size + 1)  # one more: a file that grew is noticed
            read = os.preadv(fd, [buffer], 0, os.RWF_NOWAIT)
            if read != st.st_size:
                return None  # only part was cached, or it changed since the stat
            self.hits.inc()
            return OpenedFile(st, bytes(memoryview(buffer)[:read]), None)
        except OSError:  # EAGAIN: not in the page cache; EOPNOTSUPP: no RWF_NOWAIT here
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        for fd in self._roots.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._roots.clear()


def filesystem_type(fd: int) -> str | None:
    """The type of the filesystem ``fd`` lies on, from its mount id (``/proc/self/fdinfo``)
    and ``/proc/self/mountinfo`` (``… - ext4 /dev/vda1 rw``); None when /proc says nothing."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            mount_id = next(line.split()[1] for line in info if line.startswith("mnt_id:"))
        with open("/proc/self/mountinfo") as table:
            for line in table:
                fields = line.split()
                if fields[0] == mount_id:
                    return fields[fields.index("-", 6) + 1]  # after the optional fields
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return None
