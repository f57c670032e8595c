"""A sample node for the metrics tests and the dashboard: alice's notebook with a walltime
sidecar and a deadline, bob's guaranteed pod with a share of a GPU (NVML double)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from harness.cgroup_tree import MIB, Container, Pod
from harness.nvml_double import FakeGpu, NvmlDouble

NODE = "node-1"
DEADLINE = datetime.now(UTC) + timedelta(minutes=28)


def user_pods() -> list[Pod]:
    alice = Pod("alice", containers=[
        Container("notebook", memory_current=450 * MIB, inactive_file=50 * MIB,
                  memory_max=51200 * MIB),
        Container("walltime", memory_current=30 * MIB, inactive_file=0, memory_max=64 * MIB)],
        annotations={"jupyterhub-sidecars/profile": "a100-10g",
                     "jupyterhub-sidecars/walltime-limit-seconds": "1800",
                     "jupyterhub-sidecars/walltime-deadline": DEADLINE.isoformat()})
    bob = Pod("bob@example.org", server="gpu", qos="guaranteed", containers=[
        Container("notebook", memory_current=2000 * MIB, inactive_file=0, memory_max=4096 * MIB,
                  gpu_limit_units=10, pids=[4242])])
    return [alice, bob]


def nvml() -> NvmlDouble:
    gpu = FakeGpu(name="NVIDIA A100-SXM4-40GB", total=40 * 2**30, used=1500 * 10**6,
                  processes=[(4242, 1164 * 10**6), (9999, 300 * 10**6)])
    return NvmlDouble([gpu])
