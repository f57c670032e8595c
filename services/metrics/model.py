"""What a read of the node yields, whichever source produced it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.metrics.cgroups import CgroupStats
from services.metrics.gpu import GpuDevice


@dataclass(frozen=True)
class ServerRef:
    namespace: str
    pod: str
    user: str
    server: str
    profile: str

    def values(self) -> list[str]:
        return [self.namespace, self.pod, self.user, self.server, self.profile]


@dataclass(frozen=True)
class GpuUse:
    device: GpuDevice
    memory_used_bytes: int


@dataclass(frozen=True)
class ContainerUsage:
    server: ServerRef
    container: str
    stats: CgroupStats
    gpu: list[GpuUse] = field(default_factory=list)
    gpu_memory_limit_bytes: int | None = None


@dataclass(frozen=True)
class Walltime:
    server: ServerRef
    limit_seconds: float
    remaining_seconds: float
    deadline_timestamp: float


@dataclass
class NodeUsage:
    containers: list[ContainerUsage] = field(default_factory=list)
    walltimes: list[Walltime] = field(default_factory=list)

    def by_server(self) -> list[dict[str, Any]]:
        """The per-server JSON of the agent's ``/usage``."""
        servers: dict[ServerRef, dict[str, Any]] = {}

        def entry(ref: ServerRef) -> dict[str, Any]:
            return servers.setdefault(ref, {
                "user": ref.user, "server": ref.server, "profile": ref.profile,
                "namespace": ref.namespace, "pod": ref.pod, "containers": {},
                "walltime": None})

        for usage in self.containers:
            stats = usage.stats
            entry(usage.server)["containers"][usage.container] = {
                "memory": {"used_bytes": stats.memory_working_set_bytes,
                           "usage_bytes": stats.memory_usage_bytes,
                           "limit_bytes": stats.memory_limit_bytes,
                           "peak_bytes": stats.memory_peak_bytes,
                           "oom_kills": stats.oom_kills},
                "cpu": {"usage_seconds": round(stats.cpu_usage_seconds, 3),
                        "limit": stats.cpu_limit},
                "gpu": [{"index": g.device.index, "uuid": g.device.uuid,
                         "name": g.device.name, "used_bytes": g.memory_used_bytes,
                         "device_total_bytes": g.device.memory_total_bytes}
                        for g in usage.gpu],
                "gpu_memory_limit_bytes": usage.gpu_memory_limit_bytes,
            }
        for walltime in self.walltimes:
            entry(walltime.server)["walltime"] = {
                "limit": walltime.limit_seconds, "remaining": walltime.remaining_seconds,
                "deadline_timestamp": walltime.deadline_timestamp}
        return list(servers.values())
