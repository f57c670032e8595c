"""GPU memory attribution on real hardware (run where there is an NVIDIA GPU and PyTorch).

Starts two processes that each hold GPU memory: one a descendant of this process (as a kernel
is of its Jupyter server), one detached from it (another user's session). Then reads NVML
through the agent's GpuReader and the in-session StatusReader, and prints what each sees next
to nvidia-smi's own per-process numbers. Also reads this machine's own cgroup (v2 on most
hosts) with the same reader the status API uses.

    python -m benchmarks.gpu_attribution [--mine-mib 1164] [--other-mib 2048]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from services.contract import USAGE_SCOPE_ENV
from services.metrics.cgroups import own_cgroup
from services.metrics.gpu import GpuReader
from services.metrics.procs import process_table
from services.metrics.status import StatusReader

HOLD = """
import sys, time, torch
block = torch.empty(int(sys.argv[1]) * 2**20, dtype=torch.uint8, device="cuda")
block.fill_(1)
torch.cuda.synchronize()
print("holding", flush=True)
time.sleep(600)
"""


def start_holder(mib: int, detached: bool) -> int:
    if not detached:
        child = subprocess.Popen([sys.executable, "-c", HOLD, str(mib)], stdout=subprocess.PIPE,
                                 text=True)
        assert child.stdout is not None and child.stdout.readline().startswith("holding")
        return child.pid
    # Double fork: the holder is re-parented away from us, like another user's process.
    launcher = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "$0" {mib} > /tmp/holder.out 2>&1 & echo $!', HOLD],
        capture_output=True, text=True, check=True)
    pid = int(launcher.stdout.strip())
    deadline = time.time() + 120
    log = Path("/tmp/holder.out")
    while "holding" not in log.read_text():
        assert time.time() < deadline, log.read_text()
        time.sleep(0.2)
    return pid


def nvidia_smi() -> str:
    return subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                           "--format=csv,noheader"], capture_output=True, text=True,
                          check=False).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mine-mib", type=int, default=1164)
    parser.add_argument("--other-mib", type=int, default=2048)
    args = parser.parse_args()
    mine = start_holder(args.mine_mib, detached=False)
    other = start_holder(args.other_mib, detached=True)
    try:
        snapshot = GpuReader().snapshot()
        print("devices:", [(d.index, d.name, d.memory_used_bytes // 2**20,
                            d.memory_total_bytes // 2**20) for d in snapshot.devices])
        print("NVML processes (pid, MiB):",
              [(p.pid, (p.memory_used_bytes or 0) // 2**20) for p in snapshot.processes])
        print("nvidia-smi:", nvidia_smi().strip().replace("\n", "; "))
        reader = StatusReader(env={USAGE_SCOPE_ENV: "process-tree"}, gpu=GpuReader(),
                              cgroup=own_cgroup())
        gpu = reader.read_usage()["gpu"]
        print("status API gpu:", json.dumps(
            {k: gpu[k] for k in ("used_bytes", "limit_bytes", "attribution")}),
            "processes:", [(p["pid"], p["used_bytes"] // 2**20) for p in gpu["processes"]])
        by_pid = {p.pid: p.memory_used_bytes for p in snapshot.processes}
        ours_ok = gpu["used_bytes"] == by_pid[mine] and other not in {
            p["pid"] for p in gpu["processes"]}
        print(f"mine pid {mine}: {by_pid[mine] // 2**20} MiB; other pid {other}: "
              f"{by_pid[other] // 2**20} MiB; attribution correct: {ours_ok}")
        cgroup = own_cgroup()
        stats = cgroup.read() if cgroup else None
        if cgroup and stats:
            table = process_table()
            procs = Path(f"{cgroup.memory_dir}/cgroup.procs").read_text().split()
            rss = sum(table[int(p)].rss_bytes for p in procs if int(p) in table)
            print(f"own cgroup v{cgroup.version} {cgroup.memory_dir}: working set "
                  f"{stats.memory_working_set_bytes // 2**20} MiB, anon "
                  f"{(stats.memory_rss_bytes or 0) // 2**20} MiB, limit "
                  f"{stats.memory_limit_bytes}, RSS of its {len(procs)} processes "
                  f"{rss // 2**20} MiB")
    finally:
        for pid in (mine, other):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


if __name__ == "__main__":
    main()
