"""The user's own disk usage against the user's own limit — never a shared filesystem's total.

``df`` in a session on NFS or CephFS shows the whole filesystem, everyone's files (the mistake
jupyter-resource-usage#255 reports). The sources, tried in this order, each answer only for
the folder itself:

1. **CephFS**: the folder's recursive statistics, ``ceph.dir.rbytes``, and its quota,
   ``ceph.quota.max_bytes`` (virtual xattrs, kept by the MDS: instant at any size).
2. **XFS/ext4 project quota**: a folder with a project id and the inherit flag
   (``FS_IOC_FSGETXATTR``) on a filesystem mounted with project quotas; the kernel then
   answers ``statvfs`` on that folder with the project's usage and limit.
3. **A volume of its own**: the folder is the root of a local filesystem mounted right there
   (a PVC, a size-limited tmpfs): ``statvfs``.
4. **A bounded background scan** of the folder (``du``: allocated blocks, hard links once,
   not crossing into other filesystems, not following symlinks), limited in time and in
   entries per second, on a thread at idle I/O priority — never blocking the server. Its
   limit is the one the profile declares (``disk_limit``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MOUNTINFO = "/proc/self/mountinfo"

# Local filesystems whose statvfs describes one volume. Network and cluster filesystems
# (nfs, cifs, lustre, gpfs, beegfs, fuse.*) are left out: their statvfs is a whole export.
OWN_VOLUME_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs",
                              "bcachefs"})
PROJECT_QUOTA_TYPES = frozenset({"xfs", "ext4"})
PROJECT_QUOTA_OPTIONS = frozenset({"prjquota", "pquota", "pqnoenforce", "prjjquota"})

FS_IOC_FSGETXATTR = 0x801C581F          # _IOR('X', 31, struct fsxattr)
FSXATTR = struct.Struct("=IIII I8s")    # xflags, extsize, nextents, projid, cowextsize, pad
FS_XFLAG_PROJINHERIT = 0x00000200


@dataclass(frozen=True)
class DiskUsage:
    used_bytes: int
    limit_bytes: int | None
    source: str                 # cephfs | project-quota | volume | scan
    path: str
    complete: bool = True       # False: a scan ran out of its budget; used is at least this
    files: int | None = None    # entries a scan counted
    seconds: float | None = None  # how long the scan took

    def as_json(self) -> dict[str, Any]:
        return {"used_bytes": self.used_bytes, "limit_bytes": self.limit_bytes,
                "source": self.source, "path": self.path, "complete": self.complete,
                "files": self.files, "scan_seconds": self.seconds}


# ---- mounts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    root: str           # the folder of the filesystem that is mounted here ("/": all of it)
    mount_point: str
    fstype: str
    source: str
    super_options: frozenset[str]


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and text[index + 1:index + 4].isdigit():
            out.append(chr(int(text[index + 1:index + 4], 8)))
            index += 4
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """``/proc/<pid>/mountinfo`` (proc(5)): fields up to the optional ones, ``-``, then
    type, source and super options."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 4:
            continue
        mounts.append(Mount(root=_unescape(fields[3]), mount_point=_unescape(fields[4]),
                            fstype=fields[dash + 1], source=_unescape(fields[dash + 2]),
                            super_options=frozenset(fields[dash + 3].split(","))))
    return mounts


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount that holds ``path`` (a real path): the longest mount point above it, the
    last one mounted where several share a mount point."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best


def read_mounts(mountinfo: str = MOUNTINFO) -> list[Mount]:
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
        return parse_mountinfo(handle.read())


# ---- the sources ---------------------------------------------------------------------------

Getxattr = Callable[[str, str], bytes]
Statvfs = Callable[[str], os.statvfs_result]


def _xattr_number(getxattr: Getxattr, path: str, name: str) -> int | None:
    try:
        return int(getxattr(path, name).decode().strip().rstrip("\x00"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def cephfs_usage(path: str, getxattr: Getxattr = os.getxattr,
                 declared: int | None = None) -> DiskUsage | None:
    """``ceph.dir.rbytes`` (decimal bytes below the folder) and ``ceph.quota.max_bytes``
    (``0`` or absent: no quota; then the declared limit)."""
    used = _xattr_number(getxattr, path, "ceph.dir.rbytes")
    if used is None:
        return None
    quota = _xattr_number(getxattr, path, "ceph.quota.max_bytes")
    return DiskUsage(used, quota or declared, "cephfs", path)


def project_of(path: str) -> tuple[int, bool] | None:
    """The folder's project id and whether it has the inherit flag (``FS_IOC_FSGETXATTR``,
    as ``xfs_io -c lsproj`` reads it); None where the filesystem does not know projects."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        raw = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(FSXATTR.size))
    except OSError:
        return None
    finally:
        os.close(fd)
    xflags, _, _, projid, _, _ = FSXATTR.unpack(raw)
    return projid, bool(xflags & FS_XFLAG_PROJINHERIT)


def _blocks(result: os.statvfs_result) -> tuple[int, int]:
    """(used, size) in bytes."""
    size = result.f_blocks * result.f_frsize
    return size - result.f_bfree * result.f_frsize, size


def project_quota_usage(path: str, mount: Mount, statvfs: Statvfs = os.statvfs,
                        project: Callable[[str], tuple[int, bool] | None] = project_of
                        ) -> DiskUsage | None:
    """With project quotas enforced, XFS and ext4 answer ``statvfs`` on a folder that has
    a project id and the inherit flag with that project's limit and usage — but only where
    the project has a limit; otherwise with the whole filesystem, which is not ours."""
    if mount.fstype not in PROJECT_QUOTA_TYPES or not (mount.super_options
                                                      & PROJECT_QUOTA_OPTIONS):
        return None
    found = project(path)
    if found is None or found[0] == 0 or not found[1]:
        return None
    mine, whole = statvfs(path), statvfs(mount.mount_point)
    if (mine.f_blocks, mine.f_bfree) == (whole.f_blocks, whole.f_bfree):
        return None  # no limit on the project: the kernel answered for the filesystem
    used, size = _blocks(mine)
    return DiskUsage(used, size, "project-quota", path)


def volume_usage(path: str, mount: Mount, statvfs: Statvfs = os.statvfs) -> DiskUsage | None:
    """A local filesystem mounted whole (mountinfo root ``/``) exactly at the folder."""
    if (mount.mount_point != path or mount.root != "/"
            or mount.fstype not in OWN_VOLUME_TYPES):
        return None
    used, size = _blocks(statvfs(path))
    return DiskUsage(used, size, "volume", path)


# ---- the bounded scan ----------------------------------------------------------------------

@dataclass
class ScanBudget:
    max_seconds: float = 60.0          # one scan stops here and reports "at least"
    entries_per_second: int = 50_000   # the I/O it may cause; 0: unlimited
    interval: float = 600.0            # a new scan after this long


def _idle_io_priority() -> None:
    """IOPRIO_CLASS_IDLE for the calling thread only (ioprio_set is per thread on Linux):
    the scan gets the disk when nobody else wants it."""
    numbers = {"x86_64": 251, "aarch64": 30, "ppc64le": 273, "s390x": 282}
    number = numbers.get(platform.machine())
    if number is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(number, 1, 0, 3 << 13)  # IOPRIO_WHO_PROCESS, this thread, class IDLE


def scan(root: str, budget: ScanBudget, declared: int | None,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> DiskUsage:
    """``du -sx``: allocated bytes below ``root``, hard links once, symlinks not followed,
    other filesystems not entered; unreadable folders skipped. Stops at the budget."""
    started = clock()
    device = os.lstat(root).st_dev
    seen: set[tuple[int, int]] = set()
    total, entries, complete = 0, 0, True
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    entries += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # vanished meanwhile
                    if info.st_dev != device:
                        continue  # a mount below the folder: not this volume
                    if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                        if (info.st_ino, info.st_dev) in seen:
                            continue
                        seen.add((info.st_ino, info.st_dev))
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
                    if entries % 1000 == 0:
                        elapsed = clock() - started
                        if elapsed > budget.max_seconds:
                            complete = False
                            stack.clear()
                            break
                        if budget.entries_per_second:
                            ahead = entries / budget.entries_per_second - elapsed
                            if ahead > 0:
                                sleep(ahead)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.ENOENT, errno.ENOTDIR, errno.EPERM):
                raise
    return DiskUsage(total, declared, "scan", root, complete, entries,
                     round(clock() - started, 3))


# ---- what the status API asks --------------------------------------------------------------

@dataclass
class DiskReader:
    """The folder's usage from the first source that answers for it; scans in the
    background and answers at once with the last result (None until the first scan ends)."""

    path: str
    declared: int | None = None
    budget: ScanBudget = field(default_factory=ScanBudget)
    mountinfo: str = MOUNTINFO
    getxattr: Getxattr = os.getxattr
    statvfs: Statvfs = os.statvfs
    _scanned: DiskUsage | None = None
    _scanned_at: float = 0.0
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, wait: bool = False) -> dict[str, Any] | None:
        """Call from a thread: xattr and statvfs reads can take a moment on a busy server."""
        path = os.path.realpath(self.path)
        try:
            usage = self._instant(path)
        except OSError:
            return {"state": "unavailable", "path": path, "limit_bytes": self.declared}
        if usage is not None:
            return {"state": "ready", **usage.as_json()}
        self._scan_if_due(path)
        if wait and self._thread is not None:
            self._thread.join()
        with self._lock:
            scanned = self._scanned
        if scanned is None:
            return {"state": "scanning", "path": path, "limit_bytes": self.declared}
        return {"state": "ready", **scanned.as_json()}

    def _instant(self, path: str) -> DiskUsage | None:
        found = cephfs_usage(path, self.getxattr, self.declared)
        if found is not None:
            return found
        mount = mount_of(path, read_mounts(self.mountinfo))
        if mount is None:
            return None
        return (project_quota_usage(path, mount, self.statvfs)
                or volume_usage(path, mount, self.statvfs))

    def _scan_if_due(self, path: str) -> None:
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            due = self._scanned is None or time.monotonic() - self._scanned_at > \
                self.budget.interval
            if running or not due:
                return
            self._thread = threading.Thread(target=self._scan, args=(path,),
                                            name="disk-scan", daemon=True)
            self._thread.start()

    def _scan(self, path: str) -> None:
        _idle_io_priority()
        try:
            result = scan(path, self.budget, self.declared)
        except OSError:
            result = DiskUsage(0, self.declared, "scan", path, complete=False)
        with self._lock:
            self._scanned, self._scanned_at = result, time.monotonic()
