"""An NVML double with pynvml's call signatures, structs and error classes.

Only the hardware is fake: return values are pynvml's own ctypes structs
(``c_nvmlMemory_t``, ``c_nvmlProcessInfo_t``), errors are pynvml's ``NVMLError`` subclasses,
so code that works here works against the real library. ``test_nvml_double_matches_pynvml``
checks that every function has the real one's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pynvml


@dataclass
class FakeGpu:
    name: str = "NVIDIA A100-SXM4-40GB"
    total: int = 40 * 1024**3
    used: int = 0
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    mig: list[FakeGpu | None] | None = None  # slots; None: MIG disabled / not capable
    mig_capable: bool = True


class NvmlDouble:
    """Import-compatible with ``pynvml`` for the functions the agent calls."""

    NVMLError = pynvml.NVMLError

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.initialised = False
        self.calls: list[str] = []

    def _check(self) -> None:
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self) -> None:
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check()
        if index >= len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: Any = None) -> Any:
        memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.used = handle.total, handle.used
        memory.free = handle.total - handle.used
        return memory

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        self.calls.append("compute")
        found = []
        not_available = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
        for pid, used in handle.processes:
            info = pynvml.c_nvmlProcessInfo_v3_t()
            info.pid = pid
            info.usedGpuMemory = used if used is not None else not_available
            info.gpuInstanceId = info.computeInstanceId = 0xFFFFFFFF
            # exactly what pynvml does with each struct it gets from the driver
            friendly = pynvml.nvmlStructToFriendlyObject(info)
            if friendly.usedGpuMemory == not_available:
                friendly.usedGpuMemory = None
            found.append(friendly)
        return found

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        return []

    def nvmlDeviceGetMigMode(self, device: FakeGpu) -> list[int]:
        if not device.mig_capable:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        enabled = pynvml.NVML_DEVICE_MIG_ENABLE if device.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [enabled, enabled]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: FakeGpu) -> int:
        return len(device.mig or [])

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: FakeGpu, index: int) -> FakeGpu:
        slot = (device.mig or [])[index]
        if slot is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return slot

