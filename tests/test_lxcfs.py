"""Limits visible inside the session: LXCFS' views of /proc in the notebook, so ``free``,
``top`` and ``nproc`` show the container's limits instead of the machine's.

The real lxcfs (Debian's) on a folder of this machine, a real JupyterHub whose local spawner
(as root) puts each server into a cgroup of its own with the profile's limits and mounts the
LXCFS files over ``/proc`` in the server's mount namespace — what the hooks do with hostPath
volumes in a pod (tests/test_kubespawner_pod.py checks those).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.hub import Hub, process_env, running_hub, server_pid, status_url, user_token
from harness.kernel import run_in_kernel
from harness.tools import in_ci, require_tool, stop_process
from services.hub.plan import LXCFS_FILES

pytestmark = pytest.mark.slow

GB3 = 3 * 1024**3  # the "long" test profile: mem_limit 3G, cpu_limit 1.5


@pytest.fixture(scope="module")
def lxcfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        message = "lxcfs and per-server cgroups need root"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    lxcfs = require_tool("lxcfs", Path("/usr/bin"))
    mount_point = tmp_path_factory.mktemp("lxcfs")
    pidfile = mount_point.parent / "lxcfs.pid"
    process = subprocess.Popen([lxcfs, "-f", "-p", str(pidfile), str(mount_point)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not (mount_point / "proc" / "meminfo").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            error = process.stderr.read().decode() if process.stderr else ""
            stop_process(process, 5)
            pytest.fail(f"lxcfs did not mount {mount_point}: {error[-2000:]}")
        time.sleep(0.1)
    yield mount_point
    stop_process(process, 10)
    subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)
    if process.stderr:
        process.stderr.close()


@pytest.fixture(scope="module")
def lxcfs_hub(tmp_path_factory: pytest.TempPathFactory, lxcfs_dir: Path) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("lxcfs-hub"),
                     extra_env={"TEST_LXCFS_DIR": str(lxcfs_dir)}) as hub:
        yield hub


def test_every_file_the_hooks_mount_exists_in_lxcfs(lxcfs_dir: Path) -> None:
    """Pods mount them as hostPath ``type: File``: one missing would stop every start."""
    for name in LXCFS_FILES:
        assert (lxcfs_dir / name).is_file(), name
    assert (lxcfs_dir / "proc" / "meminfo").read_text().startswith("MemTotal:")


def test_free_in_the_notebook_shows_the_profiles_memory_limit(lxcfs_hub: Hub) -> None:
    user = "lxcfs-alice"
    lxcfs_hub.start_server(user, profile="long")
    pid = server_pid(lxcfs_hub, user)
    env = process_env(pid)
    token = env["JUPYTERHUB_API_TOKEN"]
    server_url = env["JUPYTERHUB_SERVICE_URL"].rstrip("/")
    output = run_in_kernel(server_url, token, (
        "import subprocess, os\n"
        "print(subprocess.run(['free', '-b'], capture_output=True, text=True).stdout)\n"
        "print('NPROC', subprocess.run(['nproc'], capture_output=True, text=True).stdout)\n"
        "print('CGROUP', open('/proc/self/cgroup').read())\n"))
    mem = next(line.split() for line in output.splitlines() if line.startswith("Mem:"))
    assert int(mem[1]) == GB3, output  # total: the limit, not the machine's memory
    assert int(mem[2]) < GB3
    machine = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    assert machine != GB3  # the hub's own view is the machine's
    assert "jupyterhub-sidecars/lxcfs-alice-default" in output

    # The limit is enforced, not only shown: the cgroup's own figure.
    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    memory_path = next(line.split(":", 2)[2] for line in cgroups.splitlines()
                       if ":memory:" in line or line.startswith("0::"))
    if ":memory:" in cgroups:
        limit_file = Path(f"/sys/fs/cgroup/memory{memory_path}/memory.limit_in_bytes")
    else:
        limit_file = Path(f"/sys/fs/cgroup{memory_path}/memory.max")
    assert int(limit_file.read_text()) == GB3

    # The status bar now reads the server's own cgroup (not its process tree).
    body = httpx.get(status_url(lxcfs_hub, user),
                     headers={"Authorization": f"token {user_token(lxcfs_hub, user)}"},
                     timeout=30).json()
    assert body["memory"]["source"] == "cgroup", body["memory"]
    assert body["memory"]["limit_bytes"] == GB3 and body["memory"]["limit_source"] == "cgroup"

    lxcfs_hub.api("DELETE", f"/users/{user}/server").raise_for_status()
    lxcfs_hub.wait_stopped(user)
    deadline = time.monotonic() + 15
    while limit_file.parent.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not limit_file.parent.exists(), "the server's cgroup outlived it"


def test_only_the_notebook_sees_lxcfs(lxcfs_hub: Hub) -> None:
    """The mounts live in the notebook's own mount namespace: the hub, the sidecars and
    every other process keep the machine's /proc."""
    user = "lxcfs-bob"
    lxcfs_hub.start_server(user, profile="long")

    def lxcfs_mounts(pid: int) -> set[str]:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        return {line.split()[4] for line in lines
                if " - fuse.lxcfs " in line and line.split()[4].startswith(("/proc/", "/sys/"))}

    notebook = server_pid(lxcfs_hub, user)
    assert {"/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/proc/uptime"} <= \
        lxcfs_mounts(notebook)
    assert lxcfs_mounts(lxcfs_hub.sidecar_pid(user)) == set()
    assert lxcfs_mounts(os.getpid()) == set()
    assert process_env(notebook).get("JUPYTERHUB_SIDECARS_USAGE_SCOPE") is None
    lxcfs_hub.api("DELETE", f"/users/{user}/server").raise_for_status()
    lxcfs_hub.wait_stopped(user)
