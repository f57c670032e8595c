"""A cgroup of its own for a local notebook server: what a pod's container gets from kubelet.

With it the profile's memory and CPU limits are enforced on this machine too, the status
bar reads the server's own cgroup (not its process tree), and LXCFS — which answers
``/proc/meminfo`` for the cgroup of the process that reads it — shows the limit in ``free``.

cgroup v1 (memory and cpu,cpuacct hierarchies): a folder below the hub's own cgroup in each.
cgroup v2: a folder next to the hub's own cgroup (a cgroup with processes cannot hand
controllers to children: the "no internal processes" rule), ``jupyterhub-sidecars/<server>``,
with the memory and cpu controllers enabled for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = "/sys/fs/cgroup"
CFS_PERIOD_US = 100_000
GROUP = "jupyterhub-sidecars"


@dataclass(frozen=True)
class ServerCgroup:
    version: int
    folders: tuple[str, ...]   # v1: one per hierarchy; v2: one

    def procs_files(self) -> list[str]:
        return [f"{folder}/cgroup.procs" for folder in self.folders]

    def add(self, pid: int) -> None:
        for procs in self.procs_files():
            Path(procs).write_text(str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in Path(procs).read_text().split())
        return found

    def remove(self, grace: float = 2.0, timeout: float = 5.0) -> bool:
        """What kubelet does when a container ends: whatever is left inside (a kernel the
        server did not stop) gets SIGKILL after ``grace``; then the folders go. False when
        that did not work within ``timeout``."""
        started = time.monotonic()
        while True:
            left = self.pids()
            if not left:
                try:
                    for folder in self.folders:
                        if Path(folder).is_dir():
                            Path(folder).rmdir()
                        with contextlib.suppress(OSError):  # the last server's: tidy up
                            Path(folder).parent.rmdir()
                    return True
                except OSError:
                    pass
            elif time.monotonic() - started > grace:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if time.monotonic() - started > timeout:
                return False
            time.sleep(0.1)


def _own_paths(proc_self_cgroup: str) -> dict[str, str]:
    paths = {}
    for line in Path(proc_self_cgroup).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in (controllers.split(",") if controllers else [""]):
            paths[controller] = path
    return paths


def _name(server: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", server)[:200] or "server"


def create(server: str, memory_bytes: int | None, cpus: float | None, root: str = ROOT,
           proc_self_cgroup: str = "/proc/self/cgroup") -> ServerCgroup:
    """The server's cgroup with its limits (None: no limit). OSError where cgroups cannot
    be written (not root, a read-only /sys/fs/cgroup): the caller says so and goes on."""
    own = _own_paths(proc_self_cgroup)
    name = _name(server)
    if "memory" in own:  # v1 (or hybrid: the memory controller is on v1)
        memory = f"{root}/memory{own['memory'].rstrip('/')}/{GROUP}/{name}"
        cpu_mount = next((f"{root}/{m}" for m in ("cpu,cpuacct", "cpu") if
                          Path(f"{root}/{m}").is_dir()), f"{root}/cpu")
        cpu = f"{cpu_mount}{own.get('cpu', '/').rstrip('/')}/{GROUP}/{name}"
        for folder in (memory, cpu):
            Path(folder).mkdir(parents=True, exist_ok=True)
        if memory_bytes is not None:
            Path(f"{memory}/memory.limit_in_bytes").write_text(str(memory_bytes))
        if cpus is not None:
            Path(f"{cpu}/cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            quota = max(1000, round(cpus * CFS_PERIOD_US))
            Path(f"{cpu}/cpu.cfs_quota_us").write_text(str(quota))
        return ServerCgroup(1, (memory, cpu))
    own_v2 = own.get("", "/").rstrip("/")
    parent = str(Path(own_v2).parent).rstrip("/") if own_v2 else ""
    group = f"{root}{parent}/{GROUP}"
    Path(group).mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # already enabled, or not delegated to us
        Path(f"{group}/cgroup.subtree_control").write_text("+memory +cpu")
    folder = f"{group}/{name}"
    Path(folder).mkdir(parents=True, exist_ok=True)
    if memory_bytes is not None:
        Path(f"{folder}/memory.max").write_text(str(memory_bytes))
    if cpus is not None:
        Path(f"{folder}/cpu.max").write_text(
            f"{max(1000, round(cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
    return ServerCgroup(2, (folder,))
