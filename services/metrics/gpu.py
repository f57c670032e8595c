"""GPU memory per device and per process through NVML (nvidia-ml-py).

NVML reports host PIDs: the node agent (hostPID) maps them to containers through their cgroups;
inside a container, processes match only when they share the PID namespace. No NVIDIA driver
or library → :meth:`GpuReader.snapshot` is empty and every GPU series is simply absent.
MIG: each MIG device is its own entry (``0:1`` = GPU 0, MIG slot 1) with its own memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

MIG_ENABLED = 1
RETRY_FIRST = 5.0     # seconds after a failed nvmlInit; doubling up to RETRY_MAX
RETRY_MAX = 300.0


@dataclass(frozen=True)
class GpuDevice:
    index: str
    uuid: str
    name: str
    memory_total_bytes: int
    memory_used_bytes: int


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    device_uuid: str
    memory_used_bytes: int | None  # None: the driver would not say (no privilege)


@dataclass(frozen=True)
class GpuSnapshot:
    devices: list[GpuDevice] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)

    def device(self, uuid: str) -> GpuDevice | None:
        return next((d for d in self.devices if d.uuid == uuid), None)


class GpuReader:
    """One NVML session for the life of the process; calls are serialised.

    A failed ``nvmlInit`` is tried again with backoff (5 s doubling to 5 min): at node boot
    the agent often starts before the NVIDIA driver is loaded, and giving up at the first
    failure would leave the node without GPU metrics until the agent restarts. A read that
    fails (a GPU fell off the bus, the driver was reloaded) ends the session; the next
    snapshot starts a new one on the same schedule.
    """

    def __init__(self, nvml: ModuleType | Any | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._nvml = nvml
        self._clock = clock
        self._ready = False
        self._next_try = 0.0
        self._backoff = RETRY_FIRST
        self.failures = 0

    @property
    def available(self) -> bool:
        with self._lock:
            return self._start()

    def _start(self) -> bool:
        if self._ready:
            return True
        if self._clock() < self._next_try:
            return False
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
        except Exception as error:  # no library, no driver (yet), no device
            self.failures += 1
            self._next_try = self._clock() + self._backoff
            (log.info if self.failures == 1 else log.debug)(
                "no GPU metrics: NVML unavailable (%s); trying again in %.0f s", error,
                self._backoff)
            self._backoff = min(RETRY_MAX, self._backoff * 2)
            return False
        if self.failures:
            log.info("NVML available after %d failed attempts", self.failures)
        self._ready, self._backoff = True, RETRY_FIRST
        return True

    def snapshot(self) -> GpuSnapshot:
        with self._lock:
            if not self._start():
                return GpuSnapshot()
            try:
                return self._read()
            except Exception as error:  # a GPU fell off the bus, the driver went away
                log.warning("NVML read failed (%s); starting a new session", error)
                self._end_session()
                self._next_try = self._clock() + self._backoff
                return GpuSnapshot()

    def _end_session(self) -> None:
        try:
            if self._nvml is not None:
                self._nvml.nvmlShutdown()
        except Exception:  # already gone
            log.debug("nvmlShutdown failed", exc_info=True)
        self._ready = False

    def close(self) -> None:
        with self._lock:
            if self._ready:
                self._end_session()

    def _read(self) -> GpuSnapshot:
        nvml = self._nvml
        assert nvml is not None
        snapshot = GpuSnapshot()
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mig_handles = self._mig_devices(handle)
            if mig_handles:
                for slot, mig in mig_handles:
                    self._add(snapshot, f"{index}:{slot}", mig)
            else:
                self._add(snapshot, str(index), handle)
        return snapshot

    def _mig_devices(self, handle: Any) -> list[tuple[int, Any]]:
        nvml = self._nvml
        assert nvml is not None
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError:  # not a MIG-capable GPU
            return []
        if current != MIG_ENABLED:
            return []
        found = []
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                found.append((slot, nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)))
            except nvml.NVMLError:  # empty slot
                continue
        return found

    def _add(self, snapshot: GpuSnapshot, index: str, handle: Any) -> None:
        nvml = self._nvml
        assert nvml is not None
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        snapshot.devices.append(GpuDevice(index=index, uuid=uuid,
                                          name=_text(nvml.nvmlDeviceGetName(handle)),
                                          memory_total_bytes=int(memory.total),
                                          memory_used_bytes=int(memory.used)))
        seen: set[int] = set()
        for getter in ("nvmlDeviceGetComputeRunningProcesses",
                       "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                processes = getattr(nvml, getter)(handle)
            except nvml.NVMLError:
                continue
            for process in processes:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                used = process.usedGpuMemory
                snapshot.processes.append(GpuProcess(
                    pid=int(process.pid), device_uuid=uuid,
                    memory_used_bytes=int(used) if used is not None else None))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
