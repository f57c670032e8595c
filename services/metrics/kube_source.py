"""Usage of every user pod's containers on a Kubernetes node (cgroups + NVML + pod index).

cgroup v2 (``/sys/fs/cgroup/cgroup.controllers``) is read with files kept open; a v1 node
(``/sys/fs/cgroup/memory``) through its memory and cpu,cpuacct hierarchies. Where user
containers run on the node but none is found in its cgroups (a wrong root, a layout this
agent does not know), ``/healthz`` fails and says why instead of reporting an empty node.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass

from services.metrics.cgroups import CgroupStats, V2Reader, read_text, read_v1
from services.metrics.gpu import GpuReader, GpuSnapshot
from services.metrics.model import ContainerUsage, GpuUse, NodeUsage, ServerRef, Walltime
from services.metrics.podmap import container_in_path, scan
from services.metrics.pods import PodIndex, PodInfo


@dataclass(frozen=True)
class Layout:
    version: int          # 2, 1, or 0: no cgroup filesystem this agent can read
    scan_root: str        # where pods are looked for (v1: the memory hierarchy)
    cpu_root: str = ""    # v1: the cpu,cpuacct hierarchy

    def describe(self) -> str:
        return f"cgroup v{self.version} at {self.scan_root}" if self.version else \
            f"no cgroup v2 (cgroup.controllers) or v1 memory hierarchy at {self.scan_root}"


def layout_of(root: str) -> Layout:
    if os.path.exists(f"{root}/cgroup.controllers"):
        return Layout(2, root)
    if os.path.isdir(f"{root}/memory"):
        cpu = next((f"{root}/{name}" for name in ("cpu,cpuacct", "cpuacct", "cpu")
                    if os.path.isdir(f"{root}/{name}")), f"{root}/cpuacct")
        return Layout(1, f"{root}/memory", cpu)
    return Layout(0, root)


class KubernetesSource:
    def __init__(self, index: PodIndex, *, cgroup_root: str, proc_root: str,
                 gpu: GpuReader | None) -> None:
        self._index = index
        self._cgroup_root = cgroup_root.rstrip("/")
        self._proc_root = proc_root.rstrip("/")
        self._gpu = gpu
        self._cgroups = V2Reader()
        self.layout = layout_of(self._cgroup_root)
        self.problem: str | None = None if self.layout.version else self.layout.describe()

    def _read_cgroup(self, path: str) -> CgroupStats | None:
        if self.layout.version == 2:
            return self._cgroups.read(path)
        relative = path[len(self.layout.scan_root):]
        return read_v1(path, self.layout.cpu_root + relative)

    def read(self) -> NodeUsage:
        """One pass over the node; meant to run in a worker thread (it is all file reads)."""
        pods = self._index.pods
        owners = {cid: (pod, info) for pod in pods.values()
                  for cid, info in pod.containers.items()}
        gpu_use = self._gpu_by_container()
        usage = NodeUsage()
        seen = set()
        for cgroup in scan(self.layout.scan_root):
            owner = owners.get(cgroup.container_id)
            if owner is None:  # another workload's pod, or a sandbox
                continue
            seen.add(cgroup.path)
            stats = self._read_cgroup(cgroup.path)
            if stats is None:
                continue
            pod, info = owner
            usage.containers.append(ContainerUsage(
                server=_ref(pod), container=info.name, stats=stats,
                gpu=gpu_use.get(cgroup.container_id, []),
                gpu_memory_limit_bytes=info.gpu_memory_limit_bytes))
        self._cgroups.forget_except(seen)
        self._judge(len(owners), len(seen))
        now = time.time()
        for pod in pods.values():
            if pod.walltime_deadline is not None and pod.walltime_limit_seconds is not None:
                deadline = pod.walltime_deadline.timestamp()
                usage.walltimes.append(Walltime(_ref(pod), pod.walltime_limit_seconds,
                                                max(0.0, deadline - now), deadline))
        return usage

    def _judge(self, running: int, found: int) -> None:
        """Healthy unless user containers run here and not one of them was found."""
        if not self.layout.version:
            self.problem = self.layout.describe()
        elif running and not found:
            self.problem = (f"{running} user containers run on this node but none was found "
                            f"under {self.layout.describe()}: is /sys/fs/cgroup the node's?")
        else:
            self.problem = None

    def _gpu_by_container(self) -> dict[str, list[GpuUse]]:
        """GPU processes (host PIDs) → their container through ``/proc/<pid>/cgroup``."""
        snapshot = self._gpu.snapshot() if self._gpu is not None else GpuSnapshot()
        totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for process in snapshot.processes:
            container = self.container_of_pid(process.pid)
            if container is not None and process.memory_used_bytes is not None:
                totals[container][process.device_uuid] += process.memory_used_bytes
        found: dict[str, list[GpuUse]] = {}
        for container, per_device in totals.items():
            found[container] = [GpuUse(device, used) for uuid, used in per_device.items()
                                if (device := snapshot.device(uuid)) is not None]
        return found

    def container_of_pid(self, pid: int) -> str | None:
        """v2's ``0::`` line, else v1's memory line; the deepest container id in it."""
        paths = {}
        for line in (read_text(f"{self._proc_root}/{pid}/cgroup") or "").splitlines():
            _, controllers, path = line.split(":", 2)
            paths[controllers] = path
        for key in ("", "memory"):
            found = container_in_path(paths[key]) if key in paths else None
            if found is not None:
                return found
        return None


def _ref(pod: PodInfo) -> ServerRef:
    return ServerRef(pod.namespace, pod.name, pod.user, pod.server, pod.profile)
