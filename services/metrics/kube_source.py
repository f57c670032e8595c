"""Usage of every user pod's containers on a Kubernetes node (cgroup v2 + NVML + pod index)."""

from __future__ import annotations

import time
from collections import defaultdict

from services.metrics.cgroups import V2Reader, read_text
from services.metrics.gpu import GpuReader, GpuSnapshot
from services.metrics.model import ContainerUsage, GpuUse, NodeUsage, ServerRef, Walltime
from services.metrics.podmap import container_id_of, scan
from services.metrics.pods import PodIndex, PodInfo


class KubernetesSource:
    def __init__(self, index: PodIndex, *, cgroup_root: str, proc_root: str,
                 gpu: GpuReader | None) -> None:
        self._index = index
        self._cgroup_root = cgroup_root.rstrip("/")
        self._proc_root = proc_root.rstrip("/")
        self._gpu = gpu
        self._cgroups = V2Reader()

    def read(self) -> NodeUsage:
        """One pass over the node; meant to run in a worker thread (it is all file reads)."""
        pods = self._index.pods
        owners = {cid: (pod, info) for pod in pods.values()
                  for cid, info in pod.containers.items()}
        gpu_use = self._gpu_by_container()
        usage = NodeUsage()
        seen = set()
        for cgroup in scan(self._cgroup_root):
            owner = owners.get(cgroup.container_id)
            if owner is None:  # another workload's pod, or a sandbox
                continue
            seen.add(cgroup.path)
            stats = self._cgroups.read(cgroup.path)
            if stats is None:
                continue
            pod, info = owner
            usage.containers.append(ContainerUsage(
                server=_ref(pod), container=info.name, stats=stats,
                gpu=gpu_use.get(cgroup.container_id, []),
                gpu_memory_limit_bytes=info.gpu_memory_limit_bytes))
        self._cgroups.forget_except(seen)
        now = time.time()
        for pod in pods.values():
            if pod.walltime_deadline is not None and pod.walltime_limit_seconds is not None:
                deadline = pod.walltime_deadline.timestamp()
                usage.walltimes.append(Walltime(_ref(pod), pod.walltime_limit_seconds,
                                                max(0.0, deadline - now), deadline))
        return usage

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
        for line in (read_text(f"{self._proc_root}/{pid}/cgroup") or "").splitlines():
            if line.startswith("0::"):
                return container_id_of(line.rstrip("/").rpartition("/")[2])
        return None


def _ref(pod: PodInfo) -> ServerRef:
    return ServerRef(pod.namespace, pod.name, pod.user, pod.server, pod.profile)
