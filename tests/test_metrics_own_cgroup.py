"""The readers on this machine's real cgroups, compared with what /proc says.

A child process is put into a fresh memory cgroup below our own (root can do that; CI runs as
root) before it allocates, so everything it touches is charged there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.tools import in_ci
from services.metrics.cgroups import own_cgroup, read_v1, read_v2
from services.metrics.status import StatusReader

ALLOCATE = 300 * 10**6
CHILD = f"""
import sys
sys.stdin.readline()                      # wait until we are in the new cgroup
block = bytearray({ALLOCATE})
for i in range(0, len(block), 4096):      # touch every page
    block[i] = 1
print("ready", flush=True)
sys.stdin.readline()
"""


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def child_cgroup() -> Iterator[str]:
    own = own_cgroup()
    if own is None or os.geteuid() != 0:
        message = "needs root and a cgroup of our own to create a child cgroup in"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    path = Path(own.memory_dir) / f"sidecars-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield str(path)
    finally:
        for pid in (path / "cgroup.procs").read_text().split():  # back to the parent
            (path.parent / "cgroup.procs").write_text(pid)
        path.rmdir()


def test_reader_matches_proc_for_a_process_in_its_own_cgroup(child_cgroup: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        Path(child_cgroup, "cgroup.procs").write_text(str(child.pid))
        assert child.stdin and child.stdout
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ready"
        own = own_cgroup()
        assert own is not None
        stats = (read_v1(child_cgroup, own.cpu_dir) if own.version == 1
                 else read_v2(child_cgroup))
        assert stats is not None
        rss = vm_rss(child.pid)
        print(f"cgroup working set {stats.memory_working_set_bytes / 1e6:.1f} MB, "
              f"/proc VmRSS {rss / 1e6:.1f} MB")
        assert abs(stats.memory_working_set_bytes - rss) / rss < 0.10
        assert stats.memory_rss_bytes is not None
        assert stats.memory_rss_bytes >= ALLOCATE * 0.95
        assert stats.memory_peak_bytes is not None
        assert stats.memory_peak_bytes >= stats.memory_working_set_bytes
    finally:
        child.kill()
        child.wait()


def test_status_reader_uses_the_cgroup_limit_never_the_host_total(child_cgroup: str) -> None:
    """A limit on our cgroup is what the status shows; without one, MEM_LIMIT or nothing."""
    limit_file = Path(child_cgroup, "memory.limit_in_bytes")
    if not limit_file.exists():
        limit_file = Path(child_cgroup, "memory.max")
    limit_file.write_text(str(512 * 1024**2))
    own = own_cgroup()
    assert own is not None
    reader = StatusReader(env={}, cgroup=type(own)(own.version, child_cgroup, own.cpu_dir))
    assert reader.read_usage()["memory"]["limit_bytes"] == 512 * 1024**2
    unlimited = StatusReader(env={}, cgroup=own)
    memory = unlimited.read_usage()["memory"]
    host_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert memory["limit_bytes"] != host_total
    if own.read() is not None and own.read().memory_limit_bytes is None:  # type: ignore[union-attr]
        assert memory["limit_bytes"] is None
        declared = StatusReader(env={"MEM_LIMIT": "2147483648"}, cgroup=own).read_usage()
        assert declared["memory"]["limit_bytes"] == 2**31
        assert declared["memory"]["limit_source"] == "declared"
