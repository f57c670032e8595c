"""The in-session view: ``usage`` output and the status reader's GPU attribution."""

from __future__ import annotations

import json
import os
import subprocess

from harness.nvml_double import FakeGpu, NvmlDouble
from harness.tools import REPO, VENV_BIN
from services.hub.profiles import limits_summary
from services.metrics.gpu import GpuReader
from services.metrics.status import StatusReader
from services.metrics.usage_command import render
from services.runtime.units import format_pair, size_text

MIB = 2**20
STATUS = {
    "memory": {"used_bytes": 450 * MIB, "limit_bytes": 51200 * MIB,
               "peak_bytes": 600 * MIB},
    "cpu": {"usage_seconds": 12.34, "limit": 8, "percent": 35.2},
    "gpu": {"used_bytes": 1164 * MIB, "limit_bytes": 10201 * MIB, "attribution": "process",
            "devices": [{"index": "0:1", "name": "NVIDIA A100 MIG 1g.10gb",
                         "used_bytes": 2000 * MIB, "total_bytes": 10201 * MIB}],
            "processes": [{"pid": 4242, "name": "python", "used_bytes": 1164 * MIB}]},
    "walltime": {"elapsed": 28 * 60, "limit": 30 * 60, "remaining": 2 * 60,
                 "deadline": "2026-11-22T12:30:00Z", "state": "warning"},
}


def test_table_shows_usage_limits_gpu_processes_and_walltime() -> None:
    assert render(STATUS).splitlines() == [
        "Memory      450 / 51200 MB (1 %)     peak 600 MB",
        "CPU         35 % of 8 CPUs           12.3 s used",
        "GPU memory  1164 / 10201 MB (11 %)   this container's processes",
        "  GPU 0:1   NVIDIA A100 MIG 1g.10gb  2000 MB of 10201 MB used by everyone",
        "  pid 4242  python                   1164 MB",
        "Walltime    28 min / 30 min          2 min left, stops at 2026-11-22T12:30:00Z",
    ]


def test_table_without_limits_gpu_or_walltime() -> None:
    status = {"memory": {"used_bytes": 97 * MIB, "limit_bytes": None, "peak_bytes": None},
              "cpu": {"usage_seconds": 1.0, "limit": None, "percent": None},
              "gpu": None, "walltime": {"state": "unavailable"}}
    assert render(status).splitlines() == [
        "Memory    97 MB (no limit)",
        "CPU       -                 1.0 s used",
        "Walltime  unavailable",
    ]


def test_one_unit_convention_everywhere() -> None:
    """The table the status bar's tests read too (labextension/test/units.json): `usage`, the
    status bar and the spawn page say the same for the same bytes."""
    cases = json.loads((REPO / "labextension/test/units.json").read_text())["pairs"]
    assert len(cases) >= 8
    for case in cases:
        assert format_pair(case["used"], case["limit"]) == case["text"], case
    gib = 2**30
    memory = {"used_bytes": gib // 2, "limit_bytes": gib, "peak_bytes": None}
    table = render({"memory": memory, "cpu": {"usage_seconds": 0.0}, "gpu": None,
                    "walltime": None})
    assert table.splitlines()[0].split()[1:5] == ["512", "/", "1024", "MB"]  # not 1,074 MB
    assert limits_summary({"kubespawner_override": {"mem_limit": "1G"}}, None) == \
        "Limits: 1GB RAM, no time limit"
    assert size_text(50 * gib) == "50GB" and size_text(512 * MIB) == "512MB"


def test_json_output_is_the_status_api_shape() -> None:
    env = {"PATH": os.environ["PATH"], "MEM_LIMIT": "1073741824"}
    result = subprocess.run([str(VENV_BIN / "jupyterhub-sidecars"), "usage", "--json"],
                            capture_output=True, text=True, timeout=60, env=env, check=True)
    body = json.loads(result.stdout)
    assert set(body) == {"time", "memory", "cpu", "gpu", "disk", "walltime"}
    assert body["walltime"] is None and body["memory"]["used_bytes"] > 0
    assert body["disk"] is None  # no $HOME, no folder to count


def test_gpu_by_process_where_pids_match() -> None:
    me = os.getpid()
    gpu = FakeGpu(used=3000 * MIB, processes=[(me, 1164 * MIB), (1, 500 * MIB)])
    reader = StatusReader(env={"JUPYTERHUB_SIDECARS_USAGE_SCOPE": "process-tree",
                               "JUPYTERHUB_SIDECARS_GPU_MEMORY_LIMIT": "10Gi"},
                          gpu=GpuReader(NvmlDouble([gpu])))
    status = reader.read_usage()["gpu"]
    assert status["attribution"] == "process"
    assert status["used_bytes"] == 1164 * MIB  # pid 1 is not ours
    assert status["limit_bytes"] == 10 * 2**30
    assert [p["pid"] for p in status["processes"]] == [me]


def test_gpu_by_device_inside_a_pid_namespace() -> None:
    """Host PIDs we cannot see: the container's own devices are what it uses."""
    gpu = FakeGpu(total=10 * 2**30, used=1164 * MIB, processes=[(987654, 1164 * MIB)])
    reader = StatusReader(env={}, gpu=GpuReader(NvmlDouble([gpu])))
    status = reader.read_usage()["gpu"]
    assert status["attribution"] == "device"
    assert (status["used_bytes"], status["limit_bytes"]) == (1164 * MIB, 10 * 2**30)


def test_table_with_an_idle_limit() -> None:
    status = {"memory": {"used_bytes": MIB, "limit_bytes": None, "peak_bytes": None},
              "cpu": {"usage_seconds": 1.0, "limit": None, "percent": None}, "gpu": None,
              "walltime": {"state": "running", "idle": {"limit": 7200, "idle_for": 300,
                                                        "remaining": 6900}}}
    lines = render(status).splitlines()
    assert lines[-2].split() == ["Walltime", "no", "limit"]
    assert lines[-1].split() == ["Idle", "stop", "after", "2.0", "h", "idle", "idle", "for",
                                 "5", "min,", "stops", "in", "115", "min", "without",
                                 "activity"]
