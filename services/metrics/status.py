"""The usage of *this* server, read from inside it: the status bar's and ``usage``'s source.

Memory and CPU come from the container's own cgroup, so the limit shown is the container's,
never the host's total. Where servers share a cgroup (the local spawner), the spawner sets
``JUPYTERHUB_SIDECARS_USAGE_SCOPE=process-tree`` and the server's process tree is summed
instead, with the limits the spawner declared (``MEM_LIMIT``, ``CPU_LIMIT``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from services.contract import (
    DISK_LIMIT_ENV,
    DISK_PATH_ENV,
    GPU_LIMIT_ENV,
    TOKEN_URL_ENV,
    USAGE_SCOPE_ENV,
    WALLTIME_URL_ENV,
)
from services.metrics.cgroups import CgroupStats, OwnCgroup, own_cgroup
from services.metrics.disk import DiskReader
from services.metrics.gpu import GpuReader, GpuSnapshot
from services.metrics.local_source import SERVER_COMMANDS, tree_stats
from services.metrics.procs import Process, descendants, process_table
from services.metrics.quantities import parse_bytes
from services.runtime import sidecar_urls
from services.runtime.quantities import parse_spawner_bytes

# The longest wait for a sidecar (walltime, tokenhelper) on the same pod: the status bar polls.
SIDECAR_TIMEOUT = 1.0


@dataclass
class _CpuSample:
    seconds: float
    at: float


@dataclass
class StatusReader:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    gpu: GpuReader | None = None
    cgroup: OwnCgroup | None = None
    disk: DiskReader | None = None
    proc_root: str = "/proc"
    _last_cpu: _CpuSample | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_environment(cls) -> StatusReader:
        return cls(gpu=GpuReader(), cgroup=own_cgroup(), disk=disk_reader(os.environ))

    @property
    def walltime_url(self) -> str | None:
        """The walltime sidecar (http, or http+unix on one machine)."""
        return self.env.get(WALLTIME_URL_ENV) or None

    def read_usage(self, wait_for_disk: bool = False) -> dict[str, Any]:
        """Memory, CPU, GPU and disk; file and NVML reads, so call it from a thread.
        Without ``wait_for_disk`` a disk scan runs in the background (services/metrics/disk.py).
        """
        tree = self._server_tree() if self.env.get(USAGE_SCOPE_ENV) == "process-tree" else None
        stats, source = self._stats(tree)
        limit, limit_source = stats.memory_limit_bytes, "cgroup"
        if limit is None and source == "cgroup" and self.env.get("MEM_LIMIT"):
            limit, limit_source = int(float(self.env["MEM_LIMIT"])), "declared"
        elif source == "process-tree":
            limit_source = "declared"
        return {
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "memory": {"used_bytes": stats.memory_working_set_bytes,
                       "limit_bytes": limit,
                       "limit_source": limit_source if limit is not None else None,
                       "peak_bytes": stats.memory_peak_bytes,
                       "source": source},
            "cpu": {"usage_seconds": round(stats.cpu_usage_seconds, 3),
                    "limit": stats.cpu_limit or _float(self.env.get("CPU_LIMIT")),
                    "percent": self._cpu_percent(stats.cpu_usage_seconds)},
            "gpu": self._gpu(tree),
            "disk": self.disk.read(wait=wait_for_disk) if self.disk is not None else None,
        }

    def _stats(self, tree: list[Process] | None) -> tuple[CgroupStats, str]:
        if tree is None and self.cgroup is not None:
            stats = self.cgroup.read()
            if stats is not None:
                return stats, "cgroup"
        tree = tree if tree is not None else self._server_tree()
        return tree_stats(tree, dict(self.env)), "process-tree"

    def _server_tree(self) -> list[Process]:
        """The topmost ``jupyterhub-singleuser`` above us (or us) and all below it."""
        table = process_table(self.proc_root)
        root = pid = os.getpid()
        while pid in table and pid > 1:
            if _is_server(pid, self.proc_root):
                root = pid
            pid = table[pid].ppid
        return descendants(table, root)

    def _cpu_percent(self, seconds: float) -> float | None:
        now = time.monotonic()
        with self._lock:
            last, self._last_cpu = self._last_cpu, _CpuSample(seconds, now)
        if last is None or now - last.at < 0.1:
            return None
        return round(100 * max(0.0, seconds - last.seconds) / (now - last.at), 1)

    def _gpu(self, tree: list[Process] | None) -> dict[str, Any] | None:
        snapshot = self.gpu.snapshot() if self.gpu is not None else GpuSnapshot()
        if not snapshot.devices:
            return None
        ours = {p.pid for p in (tree if tree is not None else self._server_tree())}
        mine = [p for p in snapshot.processes if p.pid in ours]
        names = {p.pid: p.name for p in tree or []}
        if mine or not snapshot.processes:
            attribution = "process"
            used = sum(p.memory_used_bytes or 0 for p in mine)
        else:
            # NVML shows host PIDs we cannot map from inside our PID namespace; the devices
            # we see are the ones given to this container, so their usage is ours.
            attribution = "device"
            used = sum(d.memory_used_bytes for d in snapshot.devices)
        limit = (parse_bytes(self.env[GPU_LIMIT_ENV]) if self.env.get(GPU_LIMIT_ENV)
                 else sum(d.memory_total_bytes for d in snapshot.devices))
        return {
            "used_bytes": used, "limit_bytes": limit, "attribution": attribution,
            "devices": [{"index": d.index, "uuid": d.uuid, "name": d.name,
                         "used_bytes": d.memory_used_bytes, "total_bytes": d.memory_total_bytes}
                        for d in snapshot.devices],
            "processes": [{"pid": p.pid, "name": names.get(p.pid, ""),
                           "device": p.device_uuid, "used_bytes": p.memory_used_bytes}
                          for p in mine],
        }

    async def read_tokens(self) -> dict[str, Any] | None:
        """The tokenhelper's own verdict (its /healthz): None without a tokenhelper; a
        ``problem`` while it cannot renew tokens — what the status bar warns about."""
        url = self.env.get(TOKEN_URL_ENV)
        if not url:
            return None
        try:
            async with sidecar_urls.async_client(url, timeout=SIDECAR_TIMEOUT) as client:
                body = (await client.get(sidecar_urls.http_url(url, "/healthz"))).json()
        except (httpx.HTTPError, ValueError):
            return {"state": "unavailable", "problem": "the token helper does not answer"}
        provider = body.get("provider")
        if isinstance(provider, dict):
            return {"state": "failing", "problem": provider.get("error"),
                    "hint": provider.get("hint"), "since": provider.get("since")}
        return {"state": "ok" if body.get("ok") else "starting"}

    async def read_walltime(self) -> dict[str, Any] | None:
        url = self.walltime_url
        if url is None:
            return None
        try:
            async with sidecar_urls.async_client(url, timeout=SIDECAR_TIMEOUT) as client:
                body: dict[str, Any] = (await client.get(
                    sidecar_urls.http_url(url, "/status"))).json()
            return body
        except (httpx.HTTPError, ValueError):
            return {"state": "unavailable"}

    def read_walltime_sync(self) -> dict[str, Any] | None:
        url = self.walltime_url
        if url is None:
            return None
        try:
            with sidecar_urls.client(url, timeout=SIDECAR_TIMEOUT) as client:
                body: dict[str, Any] = client.get(sidecar_urls.http_url(url, "/status")).json()
            return body
        except (httpx.HTTPError, ValueError):
            return {"state": "unavailable"}


def disk_reader(env: Mapping[str, str]) -> DiskReader | None:
    """The home folder (or ``JUPYTERHUB_SIDECARS_DISK_PATH``) against the profile's
    ``disk_limit``; None where neither names a folder."""
    path = env.get(DISK_PATH_ENV) or env.get("HOME")
    if not path:
        return None
    limit = env.get(DISK_LIMIT_ENV)
    return DiskReader(path, parse_spawner_bytes(limit) if limit else None)


def _is_server(pid: int, proc_root: str) -> bool:
    try:
        with open(f"{proc_root}/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return False
    return any(command in cmdline for command in SERVER_COMMANDS)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
