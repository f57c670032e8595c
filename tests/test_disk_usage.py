"""The user's own disk usage (services/metrics/disk.py) on real filesystems of this machine:
loop-mounted ext4 and xfs volumes, a size-limited tmpfs, a bind mount of a shared folder and a
tree of 100,000 files. CephFS and enforced project quotas cannot be mounted here (no ceph
client; this kernel has no quota support): their readers are tested against the documented
formats — the xattrs' decimal text, and statvfs as the kernel answers it for a project.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.tools import in_ci, require_tool
from services.metrics.disk import (
    DiskReader,
    Mount,
    ScanBudget,
    cephfs_usage,
    mount_of,
    parse_mountinfo,
    project_of,
    project_quota_usage,
    read_mounts,
    scan,
    volume_usage,
)
from services.metrics.status import StatusReader, disk_reader
from services.metrics.usage_command import render

MIB = 2**20

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 /exports/home/alice /home/jovyan rw,relatime shared:9 - nfs4 nfs:/exports rw,vers=4.2
31 22 7:0 / /home/bob rw,relatime - xfs /dev/loop0 rw,attr2,inode64,prjquota
32 22 0:41 / /home/with\\040space rw - tmpfs tmpfs rw,size=65536k
33 22 0:42 /volumes/csi/alice /home/carol rw shared:3 - ceph 10.0.0.1:6789:/ rw,name=carol
34 31 7:0 / /home/bob rw,relatime - ext4 /dev/loop1 rw
"""


def fake_statvfs(blocks: int, free: int, frsize: int = 4096) -> os.statvfs_result:
    return os.statvfs_result((frsize, frsize, blocks, free, free, 1000, 500, 500, 0, 255))


# ---- formats -------------------------------------------------------------------------------

def test_mountinfo_is_read_as_proc5_describes_it() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == ["/", "/home/jovyan", "/home/bob",
                                               "/home/with space", "/home/carol", "/home/bob"]
    nfs = mounts[1]
    assert (nfs.root, nfs.fstype, nfs.source) == ("/exports/home/alice", "nfs4", "nfs:/exports")
    assert "prjquota" in mounts[2].super_options
    # The folder's own mount, the last one where two share a mount point, the root otherwise.
    assert mount_of("/home/jovyan/data/x", mounts) is nfs
    assert mount_of("/home/bob", mounts) is mounts[5]
    assert mount_of("/home/jovyanother", mounts) is mounts[0]
    assert mount_of("/home/with space/a", mounts) is mounts[3]


def test_a_shared_filesystem_is_never_reported_as_the_users_volume() -> None:
    """jupyter-resource-usage#255: statvfs of an NFS home is everyone's usage."""
    mounts = parse_mountinfo(MOUNTINFO)
    everyone = fake_statvfs(blocks=10**9, free=10**8)
    assert volume_usage("/home/jovyan", mounts[1], lambda _: everyone) is None  # nfs
    assert volume_usage("/home/carol", mounts[4], lambda _: everyone) is None   # a subfolder
    bob = volume_usage("/home/bob", mounts[5], lambda _: fake_statvfs(2560, 2048))
    assert bob is not None and (bob.used_bytes, bob.limit_bytes) == (2 * MIB, 10 * MIB)
    # A folder below a volume's mount point is not the volume.
    assert volume_usage("/home/bob/sub", mounts[5], lambda _: everyone) is None


def test_cephfs_recursive_statistics_and_quota_xattrs() -> None:
    """What the ceph client answers: decimal text; no quota is 0 or ENODATA."""
    values = {"ceph.dir.rbytes": b"3435973837", "ceph.quota.max_bytes": b"10737418240"}

    def getxattr(path: str, name: str) -> bytes:
        assert path == "/home/carol"
        if name not in values:
            raise OSError(errno.ENODATA, "No data available")
        return values[name]

    usage = cephfs_usage("/home/carol", getxattr, declared=5 * 2**30)
    assert usage is not None and usage.source == "cephfs"
    assert (usage.used_bytes, usage.limit_bytes) == (3435973837, 10737418240)
    values["ceph.quota.max_bytes"] = b"0"
    assert cephfs_usage("/home/carol", getxattr, declared=5 * 2**30).limit_bytes == 5 * 2**30
    del values["ceph.quota.max_bytes"]
    assert cephfs_usage("/home/carol", getxattr, declared=None).limit_bytes is None

    def not_ceph(path: str, name: str) -> bytes:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    assert cephfs_usage("/home/carol", not_ceph) is None
    # A real filesystem of this machine answers "not supported" too.
    assert cephfs_usage("/tmp") is None


def test_project_quota_is_used_only_where_the_kernel_answers_for_the_project() -> None:
    mount = Mount("/", "/home", "xfs", "/dev/loop0", frozenset({"rw", "prjquota"}))
    whole, project = fake_statvfs(10**7, 9 * 10**6), fake_statvfs(2621440, 1782580)

    def statvfs(path: str) -> os.statvfs_result:
        return whole if path == "/home" else project

    usage = project_quota_usage("/home/alice", mount, statvfs, lambda _: (1042, True))
    assert usage is not None and usage.source == "project-quota"
    assert usage.limit_bytes == 10 * 2**30 and usage.used_bytes == (2621440 - 1782580) * 4096
    # No project, no inherit flag, no quota mount option, or no limit on the project.
    assert project_quota_usage("/home/alice", mount, statvfs, lambda _: (0, True)) is None
    assert project_quota_usage("/home/alice", mount, statvfs, lambda _: (1042, False)) is None
    plain = Mount("/", "/home", "xfs", "/dev/loop0", frozenset({"rw"}))
    assert project_quota_usage("/home/alice", plain, statvfs, lambda _: (1042, True)) is None
    assert project_quota_usage("/home/alice", mount, lambda _: whole,
                               lambda _: (1042, True)) is None


# ---- real filesystems ----------------------------------------------------------------------

def _require_root() -> None:
    if os.geteuid() != 0:
        message = "loop and tmpfs mounts need root"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def mounted(tmp_path: Path, kind: str, size_mib: int) -> Iterator[Path]:
    """A filesystem of ``size_mib`` mounted at a fresh folder: ext4/xfs on a loop device
    (a sparse image file), or tmpfs with ``size=``."""
    _require_root()
    target = tmp_path / f"home-{kind}"
    target.mkdir()
    if kind == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                        str(target)], check=True)
    else:
        image = tmp_path / f"{kind}.img"
        with open(image, "wb") as handle:
            handle.truncate(size_mib * MIB)
        mkfs = require_tool(f"mkfs.{kind}", Path("/usr/sbin"), Path("/sbin"))
        subprocess.run([mkfs, "-q", *(["-F"] if kind == "ext4" else ["-f"]), str(image)],
                       check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def write_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        for _ in range(size // MIB):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())


@pytest.mark.parametrize("kind", ["ext4", "xfs", "tmpfs"])
def test_a_volume_of_its_own_reports_its_own_usage_and_size(tmp_path: Path, kind: str) -> None:
    with mounted(tmp_path, kind, 320) as home:
        reader = DiskReader(str(home))
        before = reader.read()
        assert before is not None and before["source"] == "volume"
        size = before["limit_bytes"]
        # mkfs keeps some for metadata and the journal (xfs: a 64 MiB log): at most the image.
        assert 0.75 * 320 * MIB < size <= 320 * MIB, (kind, size)
        write_file(home / "data.bin", 30 * MIB)
        after = reader.read()
        grown = after["used_bytes"] - before["used_bytes"]
        assert 29 * MIB <= grown <= 32 * MIB, (kind, grown)
        assert after["complete"] is True and after["limit_bytes"] == size


def test_a_bind_mounted_subfolder_of_a_shared_volume_is_counted_not_statted(
        tmp_path: Path) -> None:
    """A PVC of a shared filesystem (subPath, or a CSI volume that is a folder) has a
    mountinfo root other than ``/``: its statvfs is the whole volume, so it is scanned."""
    with mounted(tmp_path, "ext4", 320) as shared:
        (shared / "alice").mkdir()
        (shared / "bob").mkdir()
        write_file(shared / "bob" / "big.bin", 40 * MIB)
        write_file(shared / "alice" / "mine.bin", 3 * MIB)
        home = tmp_path / "alice-home"
        home.mkdir()
        subprocess.run(["mount", "--bind", str(shared / "alice"), str(home)], check=True)
        try:
            mount = mount_of(str(home), read_mounts())
            assert mount is not None and mount.root == "/alice"
            status = DiskReader(str(home), declared=10 * 2**30).read(wait=True)
            assert status is not None and status["source"] == "scan"
            assert 3 * MIB <= status["used_bytes"] < 4 * MIB  # alice's, not bob's 40 MiB
            assert status["limit_bytes"] == 10 * 2**30
        finally:
            subprocess.run(["umount", "-l", str(home)], check=False)


def test_xfs_project_ids_are_read_with_the_same_ioctl_as_xfs_io(tmp_path: Path) -> None:
    """The project half of the quota source, on a real xfs: the id and inherit flag that
    ``xfs_io -c 'chproj'``/``chattr +P`` set. Without quota support in this kernel the limit
    cannot be enforced, so the reader must not claim one (it falls back)."""
    xfs_io = require_tool("xfs_io", Path("/usr/sbin"))
    with mounted(tmp_path, "xfs", 320) as volume:
        folder = volume / "alice"
        folder.mkdir()
        assert project_of(str(folder)) == (0, False)
        subprocess.run([xfs_io, "-c", "chproj 1042", "-c", "chattr +P", str(folder)],
                       check=True, capture_output=True)
        assert project_of(str(folder)) == (1042, True)
        mount = mount_of(str(folder), read_mounts())
        assert mount is not None and mount.fstype == "xfs"
        assert project_quota_usage(str(folder), mount) is None  # not mounted with prjquota


def test_a_scan_counts_allocated_bytes_once_and_stays_on_its_volume(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "a" / "b").mkdir(parents=True)
    write_file(home / "a" / "one.bin", 2 * MIB)
    os.link(home / "a" / "one.bin", home / "a" / "b" / "same.bin")     # a hard link: once
    os.symlink("/usr", home / "usr-link")                               # not followed
    with open(home / "sparse.bin", "wb") as handle:                     # allocated, not size
        handle.truncate(1024 * MIB)
    result = scan(str(home), ScanBudget(entries_per_second=0), declared=None)
    assert result.complete and result.files == 6
    assert 2 * MIB <= result.used_bytes < 2 * MIB + 64 * 1024, result.used_bytes
    if os.geteuid() == 0:  # another filesystem below the folder is not entered
        with mounted(tmp_path, "tmpfs", 64) as other:
            write_file(other / "x.bin", 8 * MIB)
            inner = home / "mnt"
            inner.mkdir()
            subprocess.run(["mount", "--bind", str(other), str(inner)], check=True)
            try:
                again = scan(str(home), ScanBudget(entries_per_second=0), declared=None)
                assert again.used_bytes < 3 * MIB
            finally:
                subprocess.run(["umount", "-l", str(inner)], check=False)


def test_unreadable_folders_are_skipped_not_fatal() -> None:
    _require_root()
    home = Path(tempfile.mkdtemp(prefix="disk-scan-"))
    home.chmod(0o755)
    (home / "closed").mkdir()
    write_file(home / "closed" / "hidden.bin", MIB)
    write_file(home / "open.bin", MIB)
    pid = os.fork()
    if pid == 0:  # as nobody, who cannot enter a 0700 folder of root's
        code = 1
        try:
            os.chmod(home / "closed", 0o700)
            os.setgid(65534)
            os.setuid(65534)
            result = scan(str(home), ScanBudget(entries_per_second=0), declared=None)
            # open.bin counted, hidden.bin (in the folder nobody may enter) not
            code = 0 if result.complete and MIB <= result.used_bytes < 2 * MIB else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(home)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_scan_stops_at_its_time_budget_and_says_it_is_incomplete(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for index in range(3000):
        (home / f"f{index}").write_bytes(b"x")
    ticks = iter(range(10**6))
    result = scan(str(home), ScanBudget(max_seconds=1.5, entries_per_second=0), declared=None,
                  clock=lambda: float(next(ticks)))
    assert not result.complete and result.files == 2000  # checked every 1000 entries


def test_a_scan_keeps_to_its_rate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for index in range(3000):
        (home / f"f{index}").write_bytes(b"x")
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    result = scan(str(home), ScanBudget(entries_per_second=1000), declared=None,
                  clock=lambda: now[0], sleep=sleep)
    assert result.complete and result.files == 3000
    assert sum(slept) == pytest.approx(3.0)  # 3000 entries at 1000/s


@pytest.mark.slow
def test_the_background_scan_of_100000_files_never_blocks_a_reading(tmp_path: Path) -> None:
    """The status API reads while the first scan runs: answers at once ("scanning"), then
    the count. The scan's time is printed for docs/metrics.md, not asserted."""
    home = tmp_path / "home"
    for group in range(100):
        folder = home / f"d{group:03}"
        folder.mkdir(parents=True)
        for index in range(1000):
            (folder / f"f{index}").write_bytes(b"0123456789")
    reader = DiskReader(str(home), declared=10 * 2**30,
                        budget=ScanBudget(entries_per_second=0))
    started = time.perf_counter()
    first = reader.read()
    answered = time.perf_counter() - started
    assert first is not None and first["state"] == "scanning" and answered < 0.5
    final = reader.read(wait=True)
    assert final is not None and final["state"] == "ready" and final["complete"]
    assert final["files"] == 100_100
    assert final["used_bytes"] >= 100_000 * 10
    print(f"scan of 100,100 entries: {final['scan_seconds']:.2f} s "
          f"({final['files'] / final['scan_seconds']:,.0f} entries/s), "
          f"first reading answered in {answered * 1000:.1f} ms")
    limited = scan(str(home), ScanBudget(), declared=None)  # the default rate, 50,000/s
    print(f"at the default budget: {limited.seconds:.2f} s")
    assert limited.seconds is not None and limited.seconds >= 1.9


def test_status_and_usage_show_the_disk_against_the_declared_limit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    write_file(home / "data.bin", 3 * MIB)
    reader = StatusReader(env={"HOME": str(home), "JUPYTERHUB_SIDECARS_DISK_LIMIT": "4M"})
    reader.disk = disk_reader(reader.env)
    status = reader.read_usage(wait_for_disk=True)
    disk = status["disk"]
    assert disk["limit_bytes"] == 4 * MIB and disk["source"] == "scan"
    assert disk["used_bytes"] >= 3 * MIB
    status["walltime"] = None
    line = next(row for row in render(status).splitlines() if row.startswith("Disk"))
    assert "3 / 4 MB (75 %)" in line and str(home) in line and "counted" in line
