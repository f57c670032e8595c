"""Synthetic cgroup v2 nodes with the real file formats, and the pods the API would list.

Layouts follow what the kubelet creates with the systemd and the cgroupfs drivers, with
containerd or CRI-O names, including the sandbox ("pause") cgroup and CRI-O's conmon cgroup,
which are not containers of the pod spec. File contents are copied in format from a 6.x kernel.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20


@dataclass
class Container:
    name: str
    memory_current: int = 450 * MIB
    inactive_file: int = 50 * MIB
    anon: int = 380 * MIB
    memory_max: int | None = 2048 * MIB
    memory_peak: int | None = 600 * MIB
    oom_kill: int = 0
    usage_usec: int = 12_345_678
    nr_periods: int = 1000
    nr_throttled: int = 7
    throttled_usec: int = 250_000
    cpu_quota: int | None = 200_000  # 2 CPUs at a 100 ms period
    pressure_total_usec: int = 1_500_000
    pids: list[int] = field(default_factory=list)
    gpu_limit_units: int | None = None
    id: str = ""


@dataclass
class Pod:
    user: str
    server: str = ""
    namespace: str = "jhub"
    qos: str = "burstable"  # burstable, besteffort, guaranteed
    containers: list[Container] = field(default_factory=lambda: [Container("notebook")])
    annotations: dict[str, str] = field(default_factory=dict)
    hub_pod: bool = True  # False: some other workload on the node
    uid: str = field(default_factory=lambda: str(uuidlib.uuid4()))

    @property
    def name(self) -> str:
        return f"jupyter-{self.user}" + (f"--{self.server}" if self.server else "")


def _id(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def memory_stat(c: Container) -> str:
    file = c.memory_current - c.anon
    keys = [
        ("anon", c.anon), ("file", file), ("kernel", 4 * MIB), ("kernel_stack", 294912),
        ("pagetables", 1 * MIB), ("sec_pagetables", 0), ("percpu", 2600), ("sock", 0),
        ("vmalloc", 0), ("shmem", 0), ("zswap", 0), ("zswapped", 0), ("file_mapped", 8 * MIB),
        ("file_dirty", 0), ("file_writeback", 0), ("swapcached", 0), ("anon_thp", 0),
        ("file_thp", 0), ("shmem_thp", 0), ("inactive_anon", c.anon), ("active_anon", 0),
        ("inactive_file", c.inactive_file), ("active_file", file - c.inactive_file),
        ("unevictable", 0), ("slab_reclaimable", 300000), ("slab_unreclaimable", 200000),
        ("slab", 500000), ("workingset_refault_anon", 0), ("workingset_refault_file", 12),
        ("workingset_activate_anon", 0), ("workingset_activate_file", 3),
        ("workingset_restore_anon", 0), ("workingset_restore_file", 0),
        ("workingset_nodereclaim", 0), ("pgscan", 0), ("pgsteal", 0), ("pgscan_kswapd", 0),
        ("pgscan_direct", 0), ("pgsteal_kswapd", 0), ("pgsteal_direct", 0), ("pgfault", 99321),
        ("pgmajfault", 11), ("pgrefill", 0), ("pgactivate", 40), ("pgdeactivate", 0),
        ("pglazyfree", 0), ("pglazyfreed", 0), ("thp_fault_alloc", 0),
        ("thp_collapse_alloc", 0)]
    return "".join(f"{k} {v}\n" for k, v in keys)


def pressure(total: int) -> str:
    return (f"some avg10=0.12 avg60=0.05 avg300=0.01 total={total}\n"
            f"full avg10=0.00 avg60=0.00 avg300=0.00 total={total // 3}\n")


def write_container(directory: Path, c: Container) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "memory.current": f"{c.memory_current}\n",
        "memory.max": f"{c.memory_max}\n" if c.memory_max is not None else "max\n",
        "memory.stat": memory_stat(c),
        "memory.events": f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {c.oom_kill}\n"
                         "oom_group_kill 0\n",
        "cpu.stat": (f"usage_usec {c.usage_usec}\nuser_usec {c.usage_usec * 3 // 4}\n"
                     f"system_usec {c.usage_usec // 4}\nnr_periods {c.nr_periods}\n"
                     f"nr_throttled {c.nr_throttled}\nthrottled_usec {c.throttled_usec}\n"
                     "nr_bursts 0\nburst_usec 0\n"),
        "cpu.max": f"{c.cpu_quota} 100000\n" if c.cpu_quota else "max 100000\n",
        "cpu.weight": "100\n",
        "memory.pressure": pressure(c.pressure_total_usec),
        "cpu.pressure": pressure(c.pressure_total_usec * 2),
        "io.pressure": pressure(c.pressure_total_usec // 2),
        "cgroup.procs": "".join(f"{pid}\n" for pid in c.pids),
        "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        "memory.swap.current": "0\n", "memory.min": "0\n", "memory.low": "0\n",
        "memory.high": "max\n", "pids.current": f"{len(c.pids) or 3}\n", "pids.max": "max\n",
    }
    if c.memory_peak is not None:
        files["memory.peak"] = f"{c.memory_peak}\n"
    for name, text in files.items():
        (directory / name).write_text(text)


def write_container_v1(memory: Path, cpu: Path, c: Container) -> None:
    """The same container in cgroup v1's memory and cpu,cpuacct hierarchies (formats of a
    5.x kernel: totals include children, no limit is 9223372036854771712)."""
    memory.mkdir(parents=True, exist_ok=True)
    cpu.mkdir(parents=True, exist_ok=True)
    file = c.memory_current - c.anon
    stat = {"cache": file, "rss": c.anon, "rss_huge": 0, "shmem": 0, "mapped_file": 8 * MIB,
            "inactive_anon": c.anon, "active_anon": 0, "inactive_file": c.inactive_file,
            "active_file": file - c.inactive_file, "unevictable": 0,
            "hierarchical_memory_limit": c.memory_max or 9223372036854771712}
    text = "".join(f"{k} {v}\n" for k, v in stat.items())
    text += "".join(f"total_{k} {v}\n" for k, v in stat.items()
                    if k != "hierarchical_memory_limit")
    files = {
        memory / "memory.usage_in_bytes": f"{c.memory_current}\n",
        memory / "memory.limit_in_bytes": f"{c.memory_max or 9223372036854771712}\n",
        memory / "memory.max_usage_in_bytes": f"{c.memory_peak or c.memory_current}\n",
        memory / "memory.stat": text,
        memory / "memory.oom_control": f"oom_kill_disable 0\nunder_oom 0\noom_kill "
                                       f"{c.oom_kill}\n",
        memory / "cgroup.procs": "".join(f"{pid}\n" for pid in c.pids),
        cpu / "cpuacct.usage": f"{c.usage_usec * 1000}\n",
        cpu / "cpu.cfs_quota_us": f"{c.cpu_quota or -1}\n",
        cpu / "cpu.cfs_period_us": "100000\n",
        cpu / "cpu.stat": f"nr_periods {c.nr_periods}\nnr_throttled {c.nr_throttled}\n"
                          f"throttled_time {c.throttled_usec * 1000}\n",
    }
    for path, content in files.items():
        path.write_text(content)


def build_node_v1(root: Path, pods: list[Pod], *, driver: str = "cgroupfs",
                  runtime: str = "containerd") -> None:
    """A cgroup v1 node: ``root/memory`` and ``root/cpu,cpuacct`` (and the named ``cpu``
    and ``cpuacct`` links a v1 host has), pods laid out as kubelet does."""
    for pod in pods:
        for c in pod.containers:
            c.id = c.id or _id(f"{pod.uid}/{c.name}")
            name = container_dir_name(c.id, driver, runtime)
            relative = pod_dir(Path("/"), pod, driver).relative_to("/") / name
            write_container_v1(root / "memory" / relative, root / "cpu,cpuacct" / relative, c)
    for link in ("cpu", "cpuacct"):
        if not (root / link).exists():
            (root / link).symlink_to("cpu,cpuacct")


def pod_dir(root: Path, pod: Pod, driver: str) -> Path:
    if driver == "kind":  # kubelet --cgroup-root=/kubelet with the cgroupfs driver
        return pod_dir(root / "kubelet", pod, "cgroupfs")
    if driver == "systemd":
        uid = pod.uid.replace("-", "_")
        if pod.qos == "guaranteed":
            return root / "kubepods.slice" / f"kubepods-pod{uid}.slice"
        qos = f"kubepods-{pod.qos}.slice"
        return root / "kubepods.slice" / qos / f"kubepods-{pod.qos}-pod{uid}.slice"
    if pod.qos == "guaranteed":
        return root / "kubepods" / f"pod{pod.uid}"
    return root / "kubepods" / pod.qos / f"pod{pod.uid}"


def container_dir_name(container_id: str, driver: str, runtime: str) -> str:
    if driver == "kind":
        driver = "cgroupfs"
    if driver == "systemd":
        prefix = "cri-containerd" if runtime == "containerd" else "crio"
        return f"{prefix}-{container_id}.scope"
    return container_id if runtime == "containerd" else f"crio-{container_id}"


def build_node(root: Path, pods: list[Pod], *, driver: str = "systemd",
               runtime: str = "containerd") -> None:
    """Write every pod's cgroups (plus sandbox and conmon ones) under ``root``."""
    for pod in pods:
        directory = pod_dir(root, pod, driver)
        for c in pod.containers:
            c.id = c.id or _id(f"{pod.uid}/{c.name}")
            write_container(directory / container_dir_name(c.id, driver, runtime), c)
        sandbox = _id(f"{pod.uid}/pause")
        write_container(directory / container_dir_name(sandbox, driver, runtime),
                        Container("pause", memory_current=MIB, anon=MIB // 2))
        if runtime == "crio" and driver == "systemd":
            write_container(directory / f"crio-conmon-{sandbox}.scope",
                            Container("conmon", memory_current=MIB, anon=MIB // 2))
        (directory / "memory.current").write_text("999999999\n")  # pod level: not a container
    (root / "system.slice" / "containerd.service").mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")


def pod_json(pod: Pod, node: str = "node-1", runtime: str = "containerd",
             resource_version: str = "1") -> dict[str, Any]:
    """The pod as the API server returns it (the fields that matter, with real names)."""
    scheme = "containerd" if runtime == "containerd" else "cri-o"
    labels = {"app": "jupyterhub", "component": "singleuser-server",
              "hub.jupyter.org/username": pod.user.replace("@", "-40"),
              "hub.jupyter.org/servername": pod.server, "chart": "jupyterhub-4.1.0",
              "heritage": "jupyterhub", "release": "jhub"}
    annotations = {"hub.jupyter.org/username": pod.user,
                   "hub.jupyter.org/servername": pod.server, **pod.annotations}
    if not pod.hub_pod:
        labels, annotations = {"app": "other"}, {}
    containers = []
    for c in pod.containers:
        c.id = c.id or _id(f"{pod.uid}/{c.name}")
        limits: dict[str, Any] = {"memory": str(c.memory_max or "")} if c.memory_max else {}
        if c.gpu_limit_units:
            limits["mortalgpu/v100"] = str(c.gpu_limit_units)
        containers.append({"name": c.name, "image": "quay.io/jupyter/base-notebook:latest",
                           "resources": {"limits": limits, "requests": {}}})
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
                     "resourceVersion": resource_version, "labels": labels,
                     "annotations": annotations,
                     "creationTimestamp": "2026-11-22T10:00:00Z"},
        "spec": {"nodeName": node, "containers": containers, "restartPolicy": "OnFailure"},
        "status": {
            "phase": "Running", "podIP": "10.0.0.12", "startTime": "2026-11-22T10:00:01Z",
            "containerStatuses": [
                {"name": c.name, "containerID": f"{scheme}://{c.id}", "ready": True,
                 "restartCount": 0, "image": "quay.io/jupyter/base-notebook:latest",
                 "imageID": "", "started": True,
                 "state": {"running": {"startedAt": "2026-11-22T10:00:02Z"}}}
                for c in pod.containers],
        },
    }
