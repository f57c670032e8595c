"""Usage of the servers on one machine without Kubernetes (``make demo``, a lone server).

Every server shares the machine's cgroup, so servers are told apart by process tree: a
``jupyterhub-singleuser`` process and its descendants (kernels, terminals). Its environment,
set by the spawner, names the user and server and carries the declared limits (``MEM_LIMIT``,
``CPU_LIMIT``) and the walltime sidecar's URL, whose ``/status`` gives the countdown.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

import httpx

from services.contract import PROFILE_ENV, WALLTIME_URL_ENV
from services.metrics.cgroups import CgroupStats, read_text
from services.metrics.gpu import GpuReader, GpuSnapshot
from services.metrics.model import ContainerUsage, GpuUse, NodeUsage, ServerRef, Walltime
from services.metrics.procs import Process, descendants, environ, process_table
from services.runtime import sidecar_urls

log = logging.getLogger(__name__)

SERVER_COMMANDS = (b"jupyterhub-singleuser", b"jupyterhub.singleuser")


def tree_stats(processes: list[Process], env: dict[str, str]) -> CgroupStats:
    """A server's process tree summed up like a cgroup, with the limits it was started with."""
    rss = sum(p.rss_bytes for p in processes)
    return CgroupStats(
        memory_usage_bytes=rss, memory_limit_bytes=_int(env.get("MEM_LIMIT")),
        memory_working_set_bytes=rss, memory_rss_bytes=rss, memory_peak_bytes=None,
        oom_kills=None, cpu_usage_seconds=sum(p.cpu_seconds for p in processes),
        cpu_limit=_float(env.get("CPU_LIMIT")))


class LocalSource:
    def __init__(self, *, proc_root: str = "/proc", gpu: GpuReader | None = None,
                 walltime_timeout: float = 1.0) -> None:
        self._proc = proc_root.rstrip("/")
        self._gpu = gpu
        self._timeout = walltime_timeout

    def read(self) -> NodeUsage:
        table = process_table(self._proc)
        servers = [pid for pid in table if self._is_server(pid)
                   and not self._is_server(table[pid].ppid)]
        snapshot = self._gpu.snapshot() if self._gpu is not None else GpuSnapshot()
        usage = NodeUsage()
        for pid in servers:
            env = environ(pid, self._proc)
            if "JUPYTERHUB_USER" not in env:
                continue
            ref = ServerRef(namespace="", pod="", user=env["JUPYTERHUB_USER"],
                            server=env.get("JUPYTERHUB_SERVER_NAME", ""),
                            profile=env.get(PROFILE_ENV, ""))
            tree = descendants(table, pid)
            usage.containers.append(ContainerUsage(
                server=ref, container="notebook", stats=tree_stats(tree, env),
                gpu=_gpu_of({p.pid for p in tree}, snapshot)))
            if WALLTIME_URL_ENV in env:
                walltime = self._walltime(ref, env[WALLTIME_URL_ENV])
                if walltime is not None:
                    usage.walltimes.append(walltime)
        return usage

    def close(self) -> None:
        """Nothing stays open: each walltime is read over a connection of its own."""

    def _is_server(self, pid: int) -> bool:
        cmdline = (read_text(f"{self._proc}/{pid}/cmdline") or "").encode()
        return any(command in cmdline for command in SERVER_COMMANDS)

    def _walltime(self, ref: ServerRef, url: str) -> Walltime | None:
        try:
            with sidecar_urls.client(url, timeout=self._timeout) as client:
                response = client.get(sidecar_urls.http_url(url, "/status"))
            body = response.json() if response.status_code == 200 else None
            if body is None:
                return None
            deadline = datetime.fromisoformat(body["deadline"].replace("Z", "+00:00"))
            return Walltime(ref, float(body["limit"]), float(body["remaining"]),
                            deadline.timestamp())
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            log.debug("no walltime from %s: %s", url, error)
            return None


def _gpu_of(pids: set[int], snapshot: GpuSnapshot) -> list[GpuUse]:
    per_device: dict[str, int] = defaultdict(int)
    for process in snapshot.processes:
        if process.pid in pids and process.memory_used_bytes is not None:
            per_device[process.device_uuid] += process.memory_used_bytes
    return [GpuUse(device, used) for uuid, used in per_device.items()
            if (device := snapshot.device(uuid)) is not None]


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None
