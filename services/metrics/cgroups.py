"""Read one cgroup's memory, CPU and pressure figures (cgroup v2, and v1 for old hosts).

Plain string paths and small reads on purpose: a scrape reads ~10 files for each of hundreds of
containers, and pathlib's overhead shows at that count. Files a kernel does not have
(``memory.peak`` before 5.19, PSI when disabled) give ``None``; a cgroup that vanishes while it
is read gives ``None`` for the whole container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a huge page-aligned number
PRESSURE_RESOURCES = ("cpu", "memory", "io")


@dataclass(frozen=True)
class CgroupStats:
    memory_usage_bytes: int
    memory_limit_bytes: int | None  # None: no limit set on this cgroup
    memory_working_set_bytes: int  # usage minus inactive file cache, as cAdvisor and kubelet
    memory_rss_bytes: int | None  # anonymous memory
    memory_peak_bytes: int | None
    oom_kills: int | None
    cpu_usage_seconds: float
    cpu_limit: float | None  # CPUs from the CFS quota; None: no quota
    cpu_periods: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_seconds: float | None = None
    # resource -> {"some"|"full": total stall seconds}
    pressure: dict[str, dict[str, float]] = field(default_factory=dict)


def read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None


def read_int(path: str) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """``key value`` lines (memory.stat, memory.events, cpu.stat)."""
    values: dict[str, int] = {}
    if not text:
        return values
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def parse_pressure(text: str | None) -> dict[str, float]:
    """PSI lines ``some avg10=0.00 avg60=0.00 avg300=0.00 total=123`` → stall seconds."""
    totals: dict[str, float] = {}
    if not text:
        return totals
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for part in rest.split():
            if part.startswith("total="):
                totals[kind] = int(part[6:]) / 1e6  # microseconds
    return totals


def parse_cpu_max(text: str | None) -> float | None:
    """``cpu.max``: ``max 100000`` (no quota) or ``200000 100000`` (2 CPUs)."""
    if not text:
        return None
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def read_v2(directory: str) -> CgroupStats | None:
    """One cgroup v2 directory; ``None`` when it is gone (the container just stopped)."""
    base = directory.rstrip("/") + "/"
    usage = read_int(base + "memory.current")
    if usage is None:
        return None
    stat = parse_flat_keyed(read_text(base + "memory.stat"))
    events = parse_flat_keyed(read_text(base + "memory.events"))
    cpu = parse_flat_keyed(read_text(base + "cpu.stat"))
    pressure = {}
    for resource in PRESSURE_RESOURCES:
        totals = parse_pressure(read_text(f"{base}{resource}.pressure"))
        if totals:
            pressure[resource] = totals
    return CgroupStats(
        memory_usage_bytes=usage,
        memory_limit_bytes=read_int(base + "memory.max"),
        memory_working_set_bytes=max(0, usage - stat.get("inactive_file", 0)),
        memory_rss_bytes=stat.get("anon"),
        memory_peak_bytes=read_int(base + "memory.peak"),
        oom_kills=events.get("oom_kill"),
        cpu_usage_seconds=cpu.get("usage_usec", 0) / 1e6,
        cpu_limit=parse_cpu_max(read_text(base + "cpu.max")),
        cpu_periods=cpu.get("nr_periods"),
        cpu_throttled_periods=cpu.get("nr_throttled"),
        cpu_throttled_seconds=(cpu["throttled_usec"] / 1e6 if "throttled_usec" in cpu
                               else None),
        pressure=pressure,
    )


def read_v1(memory_dir: str, cpu_dir: str) -> CgroupStats | None:
    """The same figures from a v1 hierarchy (memory and cpu,cpuacct controllers)."""
    memory, cpu = memory_dir.rstrip("/") + "/", cpu_dir.rstrip("/") + "/"
    usage = read_int(memory + "memory.usage_in_bytes")
    if usage is None:
        return None
    stat = parse_flat_keyed(read_text(memory + "memory.stat"))
    limit = read_int(memory + "memory.limit_in_bytes")
    oom = parse_flat_keyed(read_text(memory + "memory.oom_control"))
    quota, period = read_int(cpu + "cpu.cfs_quota_us"), read_int(cpu + "cpu.cfs_period_us")
    throttling = parse_flat_keyed(read_text(cpu + "cpu.stat"))
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    return CgroupStats(
        memory_usage_bytes=usage,
        memory_limit_bytes=None if limit is None or limit >= UNLIMITED_V1 else limit,
        memory_working_set_bytes=max(0, usage - inactive),
        memory_rss_bytes=stat.get("total_rss", stat.get("rss")),
        memory_peak_bytes=read_int(memory + "memory.max_usage_in_bytes"),
        oom_kills=oom.get("oom_kill"),
        cpu_usage_seconds=(read_int(cpu + "cpuacct.usage") or 0) / 1e9,
        cpu_limit=quota / period if quota and quota > 0 and period else None,
        cpu_periods=throttling.get("nr_periods"),
        cpu_throttled_periods=throttling.get("nr_throttled"),
        cpu_throttled_seconds=(throttling["throttled_time"] / 1e9
                               if "throttled_time" in throttling else None),
    )


@dataclass(frozen=True)
class OwnCgroup:
    """Where this process's own usage is, found from ``/proc/self/cgroup``."""

    version: int
    memory_dir: str
    cpu_dir: str

    def read(self) -> CgroupStats | None:
        if self.version == 2:
            return read_v2(self.memory_dir)
        return read_v1(self.memory_dir, self.cpu_dir)


def own_cgroup(proc_self_cgroup: str = "/proc/self/cgroup",
               root: str = "/sys/fs/cgroup") -> OwnCgroup | None:
    """The cgroup whose limit applies to this process, v2 first, then v1.

    In a container with its own cgroup namespace the path is ``/`` and the mount *is* the
    container's cgroup. On a v1 host the path may not exist under the mount (the mount shows
    the container's cgroup at its root); then the mount root is used.
    """
    text = read_text(proc_self_cgroup) or ""
    v1: dict[str, str] = {}
    v2_path: str | None = None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2_path = path
        for controller in controllers.split(","):
            v1[controller] = path
    if "memory" in v1:
        memory = _existing(f"{root}/memory", v1["memory"])
        cpu_mount = next((f"{root}/{name}" for name in ("cpu,cpuacct", "cpuacct", "cpu")
                          if os.path.isdir(f"{root}/{name}")), f"{root}/cpu")
        cpu = _existing(cpu_mount, v1.get("cpuacct", v1.get("cpu", "/")))
        return OwnCgroup(1, memory, cpu)
    if v2_path is not None:
        directory = _existing(root, v2_path)
        if os.path.exists(directory + "/memory.current"):
            return OwnCgroup(2, directory, directory)
    return None


def _existing(mount: str, path: str) -> str:
    candidate = mount + path.rstrip("/") if path != "/" else mount
    return candidate if os.path.isdir(candidate) else mount
