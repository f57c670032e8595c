"""Read one cgroup's memory, CPU and pressure figures (cgroup v2, and v1 for old hosts).

Plain string paths and small reads on purpose: a scrape reads ~10 files for each of hundreds of
containers, and pathlib's overhead shows at that count. Files a kernel does not have
(``memory.peak`` before 5.19, PSI when disabled) give ``None``; a cgroup that vanishes while it
is read gives ``None`` for the whole container.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
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


def read_bytes(path: str, folder: int | None = None) -> bytes | None:
    """A small kernel file in one read; os.open/os.read is half the cost of open().

    ``folder``: an open directory descriptor that ``path`` is relative to.
    """
    try:
        fd = os.open(path, os.O_RDONLY, dir_fd=folder)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_text(path: str) -> str | None:
    data = read_bytes(path)
    return data.decode() if data is not None else None


def stat_value(data: bytes | None, key: bytes) -> int | None:
    """One key of a ``key value`` file without parsing the other 50 lines (memory.stat)."""
    if not data:
        return None
    if data.startswith(key + b" "):
        start = 0
    else:
        found = data.find(b"\n" + key + b" ")
        if found == -1:
            return None
        start = found + 1
    end = data.find(b"\n", start)
    try:
        return int(data[start + len(key) + 1:end if end != -1 else None])
    except ValueError:
        return None


def read_int(path: str) -> int | None:
    return _int(read_bytes(path))


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
    return pressure_totals(text.encode() if text else None)


def pressure_totals(data: bytes | None) -> dict[str, float]:
    """PSI totals from the raw file, looking only at ``total=`` (microseconds): the hot path."""
    totals: dict[str, float] = {}
    if not data:
        return totals
    for line in data.splitlines():
        at = line.rfind(b" total=")
        if at != -1:
            totals[line[:4].decode()] = int(line[at + 7:]) / 1e6
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
    reader = V2Reader(limits_refresh=0, max_open=0)
    return reader.read(directory)


class V2Reader:
    """Reads many containers' cgroups cheaply, for the node agent's scrapes.

    Files stay open between scrapes and are re-read with ``pread`` at offset 0 (the kernel
    regenerates a cgroup file on every read from its start): one system call per file instead
    of open/read/close, which was most of a scrape's cost. Descriptors are closed when a
    container goes away; past ``max_open`` files are opened and closed per read. The limits
    (``memory.max``, ``cpu.max``), which change only on a resize, are re-read every
    ``limits_refresh`` seconds.
    """

    def __init__(self, limits_refresh: float = 60.0, max_open: int | None = None) -> None:
        self._refresh = limits_refresh
        self._limits: dict[str, tuple[float, int | None, float | None]] = {}
        self._files: dict[str, dict[str, int]] = {}  # directory -> name -> descriptor
        self._open = 0
        self._max_open = max_open if max_open is not None else descriptor_budget()

    def read(self, directory: str) -> CgroupStats | None:
        stats = self._read(directory)
        if stats is None:
            self._close(directory)
        return stats

    def forget_except(self, directories: set[str]) -> None:
        """Close the files and drop the limits of containers that are gone."""
        for directory in set(self._files) - directories:
            self._close(directory)
        for directory in set(self._limits) - directories:
            del self._limits[directory]

    def close(self) -> None:
        self.forget_except(set())

    def _file(self, directory: str, name: str) -> bytes | None:
        files = self._files.setdefault(directory, {})
        fd = files.get(name)
        if fd is None:
            if self._open >= self._max_open:
                return read_bytes(f"{directory}/{name}")
            try:
                fd = os.open(f"{directory}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            files[name] = fd
            self._open += 1
        try:
            return os.pread(fd, 65536, 0)
        except OSError:  # the cgroup was removed under us
            return None

    def _close(self, directory: str) -> None:
        for fd in self._files.pop(directory, {}).values():
            os.close(fd)
            self._open -= 1

    def _read(self, directory: str) -> CgroupStats | None:
        def read(name: str) -> bytes | None:
            return self._file(directory, name)

        usage = _int(read("memory.current"))
        if usage is None:
            return None
        stat, events = read("memory.stat"), read("memory.events")
        cpu = parse_flat_keyed(_decode(read("cpu.stat")))
        pressure = {}
        for kind in PRESSURE_RESOURCES:
            totals = pressure_totals(read(f"{kind}.pressure"))
            if totals:
                pressure[kind] = totals
        now = time.monotonic()
        cached = self._limits.get(directory)
        if cached is None or now - cached[0] >= self._refresh:
            cached = (now, _int(read("memory.max")), parse_cpu_max(_decode(read("cpu.max"))))
            self._limits[directory] = cached
        return CgroupStats(
            memory_usage_bytes=usage,
            memory_limit_bytes=cached[1],
            memory_working_set_bytes=max(0, usage - (stat_value(stat, b"inactive_file") or 0)),
            memory_rss_bytes=stat_value(stat, b"anon"),
            memory_peak_bytes=_int(read("memory.peak")),
            oom_kills=stat_value(events, b"oom_kill"),
            cpu_usage_seconds=cpu.get("usage_usec", 0) / 1e6,
            cpu_limit=cached[2],
            cpu_periods=cpu.get("nr_periods"),
            cpu_throttled_periods=cpu.get("nr_throttled"),
            cpu_throttled_seconds=(cpu["throttled_usec"] / 1e6 if "throttled_usec" in cpu
                                   else None),
            pressure=pressure,
        )


def descriptor_budget() -> int:
    """How many cgroup files may stay open: half the soft limit, raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return max(0, min(soft, 1 << 20) // 2 - 64)


def _decode(data: bytes | None) -> str | None:
    return data.decode() if data is not None else None


def _int(data: bytes | None) -> int | None:
    try:
        return int(data) if data is not None else None  # "max" → None
    except ValueError:
        return None


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
