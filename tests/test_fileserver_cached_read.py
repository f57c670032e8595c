"""Small files read on the event loop (``cached_read.py``): only when the kernel promises not
to wait, never outside the mount, and every other case answered exactly as the worker-thread
path answers it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient

from services.kubepie.fileserver.app import build_app
from services.kubepie.fileserver.cached_read import (
    LOCAL_FILESYSTEMS,
    LOOP_READ_MAX,
    CachedReads,
    filesystem_type,
)
from services.kubepie.fileserver.mounts import Mount
from services.kubepie.fileserver.settings import FileserverSettings

GATEWAY = {"Authorization": "Bearer gw"}


@pytest.fixture
def on_disk() -> Iterator[Path]:
    """A folder on a disk filesystem (/var/tmp, never tmpfs), where pages can be dropped."""
    folder = Path(tempfile.mkdtemp(prefix="kubepie-cached-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def loop_reads(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("jupyterhub_sidecars_kubepie_fileserver_loop_reads_total") \
        or 0.0


async def test_cached_small_files_skip_the_thread_and_nothing_else_does(
        aiohttp_client: AiohttpClient, on_disk: Path) -> None:
    home = on_disk / "home"
    home.mkdir()
    outside = on_disk / "secret.txt"
    outside.write_text("not yours\n")
    (home / "small.txt").write_bytes(b"s" * 4096)
    (home / "big.bin").write_bytes(b"b" * (LOOP_READ_MAX + 1))
    (home / "folder").mkdir()
    (home / "folder" / "inner.txt").write_text("inner\n")
    (home / "out-relative").symlink_to("../secret.txt")
    (home / "out-absolute").symlink_to(outside)
    (home / "in-absolute").symlink_to(home / "small.txt")  # inside, but absolute
    (home / "in-relative").symlink_to("folder/inner.txt")
    (home / "proc-link").symlink_to("/proc/self/environ")
    os.mkfifo(home / "pipe")
    registry = CollectorRegistry()
    settings = FileserverSettings(mounts=f"home={home}", access_token="gw")
    client = await aiohttp_client(build_app(settings, registry))

    async def get(name: str) -> tuple[int, bytes, float]:
        before = loop_reads(registry)
        answer = await client.get(f"/home/{name}", headers=GATEWAY, allow_redirects=False)
        return answer.status, await answer.read(), loop_reads(registry) - before

    status, body, on_loop = await get("small.txt")
    assert (status, body, on_loop) == (200, b"s" * 4096, 1)
    # A symlink's own text may still be on disk the first time (RESOLVE_CACHED then says
    # EAGAIN and a thread follows it); once read, the loop follows it beneath the mount.
    assert (await get("in-relative"))[:2] == (200, b"inner\n")
    assert await get("in-relative") == (200, b"inner\n", 1)
    # The kernel refuses to follow these beneath the mount: the thread path judges them.
    # (Twice each: the second time the link's own text is cached.)
    for name in ("out-relative", "out-absolute", "proc-link") * 2:
        status, body, on_loop = await get(name)
        assert status == 403 and b"not yours" not in body and on_loop == 0, name
    assert await get("in-absolute") == (200, b"s" * 4096, 0)
    assert await get("in-absolute") == (200, b"s" * 4096, 0)
    status, _, on_loop = await get("pipe")  # a FIFO: refused, and nothing hangs
    assert (status, on_loop) == (403, 0)
    status, body, on_loop = await get("big.bin")
    assert (status, len(body), on_loop) == (200, LOOP_READ_MAX + 1, 0)
    status, _, on_loop = await get("folder")
    assert (status, on_loop) == (301, 0)
    assert (await get("nothing.txt"))[0::2] == (404, 0)

    # The same validators either way: a conditional GET of the loop's answer is a 304.
    first = await client.get("/home/small.txt", headers=GATEWAY)
    again = await client.get("/home/small.txt",
                             headers={**GATEWAY, "If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    ranged = await client.get("/home/small.txt", headers={**GATEWAY, "Range": "bytes=0-9"})
    assert ranged.status == 206 and await ranged.read() == b"s" * 10


async def test_a_file_not_in_the_page_cache_is_read_in_a_thread(
        aiohttp_client: AiohttpClient, on_disk: Path) -> None:
    """RWF_NOWAIT: pages dropped from the cache would mean a disk read, so the loop leaves
    it to a worker; the next read finds the pages the worker brought in."""
    home = on_disk / "home"
    home.mkdir()
    data = os.urandom(16384)
    path = home / "cold.bin"
    path.write_bytes(data)
    registry = CollectorRegistry()
    client = await aiohttp_client(build_app(FileserverSettings(mounts=f"home={home}",
                                                               access_token="gw"), registry))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: dropped
    finally:
        os.close(fd)
    cold = await client.get("/home/cold.bin", headers=GATEWAY)
    assert cold.status == 200 and await cold.read() == data
    assert loop_reads(registry) == 0
    warm = await client.get("/home/cold.bin", headers=GATEWAY)
    assert warm.status == 200 and await warm.read() == data
    assert loop_reads(registry) == 1


def test_only_local_filesystems_are_read_on_the_loop(on_disk: Path) -> None:
    """/proc stands in for NFS and FUSE (an open or stat there may ask someone else)."""
    fd = os.open(on_disk, os.O_PATH)
    try:
        assert filesystem_type(fd) in LOCAL_FILESYSTEMS
    finally:
        os.close(fd)
    (on_disk / "f.txt").write_text("x")
    local = CachedReads([Mount("home", ("home",), str(on_disk))])
    remote = CachedReads([Mount("kernel", ("kernel",), "/proc/sys/kernel")])
    try:
        assert local.active and local.read(local_mount(on_disk), ("f.txt",)) is not None
        assert not remote.active
        assert remote.read(Mount("kernel", ("kernel",), "/proc/sys/kernel"),
                           ("hostname",)) is None
        # A NUL would end the path early in C: never passed on.
        assert local.read(local_mount(on_disk), ("f.txt\0ignored",)) is None
        # The mount's own folder is a folder, not a file to read.
        assert local.read(local_mount(on_disk), ()) is None
    finally:
        local.close()
        remote.close()
    assert not local.active


def local_mount(root: Path) -> Mount:
    return Mount("home", ("home",), str(root))
