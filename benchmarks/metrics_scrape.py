"""What one scrape of a busy node costs the metrics agent.

A synthetic cgroup v2 node (real file formats, systemd driver, containerd) with ``--pods`` user
pods of 3 containers each (notebook, walltime, tokenhelper) plus ``--other`` pods of other
workloads, written to tmpfs (/dev/shm) as cgroupfs lives in memory. Three readers produce the
same user-pod series side by side in one run:

  ours       podmap scan + per-container reads of the files we need + exporter
  full walk  cAdvisor-style: walk the whole hierarchy, read and parse every file of every cgroup,
             then keep the user pods' ones
  naive      pathlib; find each pod's folder with rglob; prometheus-client Gauges set per scrape

Reports wall time per scrape (median, p90) and CPU time per scrape, and the share of one core
at a 15 s scrape interval.

    .venv/bin/python -m benchmarks.metrics_scrape [--pods 200] [--other 50] [--scrapes 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from harness.cgroup_tree import Container, Pod, build_node, pod_json
from services.metrics.cgroups import parse_flat_keyed, parse_pressure
from services.metrics.exporter import render
from services.metrics.kube_source import KubernetesSource
from services.metrics.pods import PodIndex

INTERVAL = 15.0


def make_node(root: Path, pods: int, other: int) -> tuple[list[Pod], PodIndex]:
    users = [Pod(f"user{i:03d}", containers=[Container("notebook"), Container("walltime"),
                                             Container("tokenhelper")]) for i in range(pods)]
    others = [Pod(f"svc{i:03d}", hub_pod=False, containers=[Container("app")])
              for i in range(other)]
    build_node(root, users + others)
    index = PodIndex()
    index.replace([pod_json(p) for p in users + others])
    return users, index


def ours(root: Path, index: PodIndex) -> Callable[[], bytes]:
    source = KubernetesSource(index, cgroup_root=str(root), proc_root="/proc", gpu=None)
    return lambda: render(source.read()).encode()


def full_walk(root: Path, index: PodIndex) -> Callable[[], bytes]:
    """Every file of every cgroup, as a general-purpose container monitor reads them."""
    wanted = {cid for pod in index.pods.values() for cid in pod.containers}

    def scrape() -> bytes:
        registry = CollectorRegistry()
        gauge = Gauge("container_memory_working_set_bytes", "x", ["id"], registry=registry)
        cpu = Gauge("container_cpu_usage_seconds", "x", ["id"], registry=registry)
        for directory, _dirs, files in os.walk(root):
            values: dict[str, object] = {}
            for name in files:
                with open(os.path.join(directory, name), "rb") as handle:
                    text = handle.read().decode()
                if name.endswith(".pressure"):
                    values[name] = parse_pressure(text)
                elif name.endswith((".stat", ".events")):
                    values[name] = parse_flat_keyed(text)
                else:
                    values[name] = text.strip()
            container = directory.rpartition("-")[2].removesuffix(".scope")
            if container in wanted and "memory.current" in values:
                stat = values["memory.stat"]
                assert isinstance(stat, dict)
                gauge.labels(container).set(int(str(values["memory.current"]))
                                            - stat["inactive_file"])
                cpu_stat = values["cpu.stat"]
                assert isinstance(cpu_stat, dict)
                cpu.labels(container).set(cpu_stat["usage_usec"] / 1e6)
        return generate_latest(registry)

    return scrape


def naive(root: Path, index: PodIndex) -> Callable[[], bytes]:
    """The straightforward version: pathlib, a search per pod, client Gauges."""
    registry = CollectorRegistry()
    labels = ["namespace", "pod", "container", "user"]
    usage = Gauge("container_memory_usage_bytes", "x", labels, registry=registry)
    working = Gauge("container_memory_working_set_bytes", "x", labels, registry=registry)
    cpu = Gauge("container_cpu_usage_seconds", "x", labels, registry=registry)
    limit = Gauge("container_spec_memory_limit_bytes", "x", labels, registry=registry)

    def scrape() -> bytes:
        for pod in index.pods.values():
            token = pod.uid.replace("-", "_")
            for folder in Path(root).rglob(f"*pod{token}.slice"):
                for container_dir in folder.iterdir():
                    cid = container_dir.name.removeprefix("cri-containerd-").removesuffix(
                        ".scope")
                    info = pod.containers.get(cid)
                    if info is None:
                        continue
                    values = [pod.namespace, pod.name, info.name, pod.user]
                    current = int((container_dir / "memory.current").read_text())
                    stat = dict(line.split() for line in
                                (container_dir / "memory.stat").read_text().splitlines())
                    cpu_stat = dict(line.split() for line in
                                    (container_dir / "cpu.stat").read_text().splitlines())
                    usage.labels(*values).set(current)
                    working.labels(*values).set(current - int(stat["inactive_file"]))
                    cpu.labels(*values).set(int(cpu_stat["usage_usec"]) / 1e6)
                    limit.labels(*values).set(int((container_dir / "memory.max").read_text()))
        return generate_latest(registry)

    return scrape


def measure(scrape: Callable[[], bytes], scrapes: int) -> tuple[list[float], list[float], int]:
    scrape()  # warm the page cache and imports
    walls, cpus = [], []
    size = 0
    for _ in range(scrapes):
        wall, cpu = time.perf_counter(), time.process_time()
        size = len(scrape())
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return walls, cpus, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--other", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=40)
    args = parser.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base, prefix="cgroup-bench-") as tmp:
        root = Path(tmp)
        _users, index = make_node(root, args.pods, args.other)
        files = sum(len(f) for _, _, f in os.walk(root))
        print(f"node: {args.pods} user pods x 3 containers + {args.other} other pods, "
              f"{files} files in {root.parent}")
        print(f"{'reader':<10} {'median ms':>10} {'p90 ms':>8} {'CPU ms':>8} "
              f"{'core % @15s':>12} {'bytes':>9}")
        results = {}
        for name, build in (("ours", ours), ("full walk", full_walk), ("naive", naive)):
            # the naive reader takes seconds per scrape: a few runs tell enough
            count = min(args.scrapes, 5) if name == "naive" else args.scrapes
            walls, cpus, size = measure(build(root, index), count)
            median, cpu = statistics.median(walls), statistics.median(cpus)
            results[name] = median
            p90 = statistics.quantiles(walls, n=10)[-1] if len(walls) > 1 else walls[0]
            print(f"{name:<10} {median * 1000:>10.1f} {p90 * 1000:>8.1f} {cpu * 1000:>8.1f} "
                  f"{100 * cpu / INTERVAL:>12.3f} {size:>9}")
        for name in ("full walk", "naive"):
            print(f"ours is {results[name] / results['ours']:.1f}x faster than {name}")


if __name__ == "__main__":
    main()
