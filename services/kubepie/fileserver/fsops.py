"""The blocking filesystem work, run in worker threads so the event loop never waits on a disk.

Every function here may block (NFS, GPFS and CephFS stat calls can take milliseconds or worse);
callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
from collections.abc import Generator
from dataclasses import dataclass
from typing import BinaryIO

from services.kubepie.fileserver.mounts import Mount, OutsideMount, inside, parent_inside
from services.kubepie.fileserver.props import copy_dead_properties

UPLOAD_PREFIX = ".kubepie-upload-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


@dataclass
class Found:
    real: str
    st: os.stat_result

    @property
    def collection(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def find(path: str, mount: Mount) -> Found | None:
    """The resource at ``path`` (symlinks followed inside the mount), or None if it is missing."""
    try:
        real = inside(path, mount)
        return Found(real, os.stat(real))
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def lexists(path: str) -> bool:
    """Like ``os.path.lexists``, but a folder we may not search is a 403, not a missing file."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


@dataclass
class OpenedFile:
    st: os.stat_result
    content: bytes | None  # small files are read at once
    handle: BinaryIO | None  # an open file for sendfile otherwise

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY  # a FIFO must not hang us


def open_for_read(path: str, mount: Mount, small: int) -> OpenedFile | Found | None:
    """Open for GET; a file of at most ``small`` bytes is read at once. Folders give Found.

    The containment check looks at what was actually opened (``/proc/self/fd``), so a symlink
    swapped in between a check and the open cannot lead outside the mount.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        real = _opened_inside(fd, path, mount)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            return Found(real, st)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(errno.EACCES, "not a regular file")
        if st.st_size <= small:
            content = os.read(fd, small + 1)
            os.close(fd)
            return OpenedFile(st, content, None)
        return OpenedFile(st, None, os.fdopen(fd, "rb"))
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def _opened_inside(fd: int, path: str, mount: Mount) -> str:
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return inside(path, mount)  # no /proc: resolve the path instead
    if not mount.contains(real):
        raise OutsideMount(f"{os.path.basename(path)!r} leads outside the mount {mount.url}")
    return real


@dataclass
class Entry:
    name: str
    st: os.stat_result

    @property
    def collection(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def scan(real: str, mount: Mount, batch: int = 1024) -> Generator[list[Entry], None, None]:
    """The members of a folder, in batches; symlinks that leave the mount are left out."""
    entries: list[Entry] = []
    with os.scandir(real) as iterator:
        for item in iterator:
            if item.name.startswith(UPLOAD_PREFIX):
                continue
            try:
                if item.is_symlink():
                    inside(item.path, mount)
                st = item.stat()
            except (OSError, OutsideMount):
                continue  # vanished, dangling, unreadable, or leads outside
            entries.append(Entry(item.name, st))
            if len(entries) >= batch:
                yield entries
                entries = []
    if entries:
        yield entries


def remove(path: str, mount: Mount) -> list[tuple[str, OSError]]:
    """Delete a file, link or folder tree; the failures, as (path, error), for a 207 answer."""
    target = parent_inside(path, mount)
    st = os.lstat(target)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(target)
        return []
    failures: list[tuple[str, OSError]] = []

    def failed(_function: object, failed_path: str, info: BaseException) -> None:
        if isinstance(info, OSError):
            failures.append((failed_path, info))

    if sys.version_info >= (3, 12):
        shutil.rmtree(target, onexc=failed)
    else:
        shutil.rmtree(target, onerror=lambda f, p, e: failed(f, p, e[1]))
    return failures


def copy(source: str, destination: str, mount_from: Mount, mount_to: Mount,
         *, infinite: bool) -> None:
    """COPY: content, mode and dead properties; symlinks inside are copied as links."""
    real = inside(source, mount_from)
    target = parent_inside(destination, mount_to)
    if not os.path.isdir(real):
        _copy_file(real, target)
        return
    if not infinite:
        os.mkdir(target)
        shutil.copymode(real, target)
        copy_dead_properties(real, target)
        return
    shutil.copytree(real, target, symlinks=True, copy_function=_copy_file)
    for folder, _dirs, _files in os.walk(real):
        relative = os.path.relpath(folder, real)
        copy_dead_properties(folder, os.path.normpath(os.path.join(target, relative)))


def _copy_file(source: str, destination: str) -> None:
    shutil.copyfile(source, destination, follow_symlinks=True)
    shutil.copymode(source, destination)
    copy_dead_properties(source, destination)


def move(source: str, destination: str, mount_from: Mount, mount_to: Mount) -> None:
    """MOVE: a rename where possible, copy and delete across filesystems."""
    real = parent_inside(source, mount_from)
    target = parent_inside(destination, mount_to)
    try:
        os.rename(real, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(real, target, copy_function=_copy_file)


def make_collection(path: str, mount: Mount) -> None:
    os.mkdir(parent_inside(path, mount))


def create_empty(path: str, mount: Mount) -> None:
    """LOCK on an unmapped URL creates an empty file (RFC 4918 §7.3)."""
    target = parent_inside(path, mount)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)


class Upload:
    """A PUT body on its way to disk: a hidden temporary file next to the target.

    Only a complete body is renamed over the target, so a client that disconnects half-way
    leaves the old file as it was and no temporary file behind.
    """

    def __init__(self, path: str, mount: Mount, *, fsync: bool) -> None:
        self.target = parent_inside(path, mount)
        self.fsync = fsync
        folder, name = os.path.split(self.target)
        if os.path.isdir(self.target):
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way", name)
        try:
            self.mode = stat.S_IMODE(os.stat(self.target).st_mode)
            self.existed = True
        except FileNotFoundError:
            self.mode = 0o666 & ~UMASK
            self.existed = False
        self.temporary = os.path.join(folder, f"{UPLOAD_PREFIX}{os.urandom(6).hex()}")
        self.fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                          0o600)
        self.size = 0

    def write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
            self.size += len(chunk)

    def commit(self) -> None:
        try:
            os.fchmod(self.fd, self.mode)
            if self.fsync:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1
        if self.existed:
            copy_dead_properties(self.target, self.temporary)
        os.rename(self.temporary, self.target)

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temporary)
