"""The in-session view: ``usage`` output and the status reader's GPU attribution."""

from __future__ import annotations

import json
import os
import subprocess

from services.metrics.gpu import GpuReader
from services.metrics.status import StatusReader
from services.metrics.usage_command import render
from tests.nvml_double import FakeGpu, NvmlDouble
from tests.tools import VENV_BIN

STATUS = {
    "memory": {"used_bytes": 450 * 10**6, "limit_bytes": 51200 * 10**6,
               "peak_bytes": 600 * 10**6},
    "cpu": {"usage_seconds": 12.34, "limit": 8, "percent": 35.2},
    "gpu": {"used_bytes": 1164 * 10**6, "limit_bytes": 10201 * 10**6, "attribution": "process",
            "devices": [{"index": "0:1", "name": "NVIDIA A100 MIG 1g.10gb",
                         "used_bytes": 2000 * 10**6, "total_bytes": 10201 * 10**6}],
            "processes": [{"pid": 4242, "name": "python", "used_bytes": 1164 * 10**6}]},
    "walltime": {"elapsed": 28 * 60, "limit": 30 * 60, "remaining": 2 * 60,
                 "deadline": "2026-11-22T12:30:00Z", "state": "warning"},
}


def test_table_shows_usage_limits_gpu_processes_and_walltime() -> None:
    assert render(STATUS).splitlines() == [
        "Memory      450 / 51,200 MB (1 %)     peak 600 MB",
        "CPU         35 % of 8 CPUs            12.3 s used",
        "GPU memory  1,164 / 10,201 MB (11 %)  this container's processes",
        "  GPU 0:1   NVIDIA A100 MIG 1g.10gb   2,000 MB of 10,201 MB used by everyone",
        "  pid 4242  python                    1,164 MB",
        "Walltime    28 min / 30 min           2 min left, stops at 2026-11-22T12:30:00Z",
    ]


def test_table_without_limits_gpu_or_walltime() -> None:
    status = {"memory": {"used_bytes": 97 * 10**6, "limit_bytes": None, "peak_bytes": None},
              "cpu": {"usage_seconds": 1.0, "limit": None, "percent": None},
              "gpu": None, "walltime": {"state": "unavailable"}}
    assert render(status).splitlines() == [
        "Memory    97 MB (no limit)",
        "CPU       -                 1.0 s used",
        "Walltime  unavailable",
    ]


def test_json_output_is_the_status_api_shape() -> None:
    env = {"PATH": os.environ["PATH"], "MEM_LIMIT": "1073741824"}
    result = subprocess.run([str(VENV_BIN / "jupyterhub-sidecars"), "usage", "--json"],
                            capture_output=True, text=True, timeout=60, env=env, check=True)
    body = json.loads(result.stdout)
    assert set(body) == {"time", "memory", "cpu", "gpu", "walltime"}
    assert body["walltime"] is None and body["memory"]["used_bytes"] > 0


def test_gpu_by_process_where_pids_match() -> None:
    me = os.getpid()
    gpu = FakeGpu(used=3000 * 10**6, processes=[(me, 1164 * 10**6), (1, 500 * 10**6)])
    reader = StatusReader(env={"JUPYTERHUB_SIDECARS_USAGE_SCOPE": "process-tree",
                               "JUPYTERHUB_SIDECARS_GPU_MEMORY_LIMIT": "10Gi"},
                          gpu=GpuReader(NvmlDouble([gpu])))
    status = reader.read_usage()["gpu"]
    assert status["attribution"] == "process"
    assert status["used_bytes"] == 1164 * 10**6  # pid 1 is not ours
    assert status["limit_bytes"] == 10 * 2**30
    assert [p["pid"] for p in status["processes"]] == [me]


def test_gpu_by_device_inside_a_pid_namespace() -> None:
    """Host PIDs we cannot see: the container's own devices are what it uses."""
    gpu = FakeGpu(total=10 * 2**30, used=1164 * 10**6, processes=[(987654, 1164 * 10**6)])
    reader = StatusReader(env={}, gpu=GpuReader(NvmlDouble([gpu])))
    status = reader.read_usage()["gpu"]
    assert status["attribution"] == "device"
    assert (status["used_bytes"], status["limit_bytes"]) == (1164 * 10**6, 10 * 2**30)
