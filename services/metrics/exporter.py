"""Prometheus series of a node read, named like cAdvisor's where they overlap.

Built at scrape time from one read of the source (no second bookkeeping to drift), with the
labels that let operators join usage to JupyterHub: user, server, profile, namespace, pod,
container. A limit that is not set produces no sample rather than a misleading 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.metrics.model import CONTAINER_LABELS, SERVER_LABELS, NodeUsage
from services.walltime.metrics import PREFIX

Reader = Callable[[], NodeUsage]
GPU_LABELS = (*CONTAINER_LABELS, "gpu", "gpu_uuid", "model")

# (metric suffix, help, attribute of CgroupStats, counter?)
_CONTAINER_SERIES = (
    ("memory_usage_bytes", "Memory charged to the container, page cache included.",
     "memory_usage_bytes", False),
    ("memory_working_set_bytes", "Memory usage minus inactive page cache (what the OOM "
     "killer and the kubelet look at).", "memory_working_set_bytes", False),
    ("memory_rss_bytes", "Anonymous memory of the container.", "memory_rss_bytes", False),
    ("memory_max_usage_bytes", "Highest memory usage seen (memory.peak).",
     "memory_peak_bytes", False),
    ("spec_memory_limit_bytes", "Memory limit of the container.", "memory_limit_bytes",
     False),
    ("oom_events", "Processes of the container killed by the OOM killer.", "oom_kills", True),
    ("cpu_usage_seconds", "CPU time used by the container.", "cpu_usage_seconds", True),
    ("spec_cpu_limit", "CPU limit of the container in CPUs (CFS quota / period).",
     "cpu_limit", False),
    ("cpu_cfs_periods", "Enforcement periods that elapsed.", "cpu_periods", True),
    ("cpu_cfs_throttled_periods", "Periods in which the container was throttled.",
     "cpu_throttled_periods", True),
    ("cpu_cfs_throttled_seconds", "Time the container was throttled.",
     "cpu_throttled_seconds", True),
)
_PRESSURE_KINDS = (("some", "waiting", "some"), ("full", "stalled", "all"))


class UsageCollector(Collector):
    def __init__(self, read: Reader) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        usage = self._read()
        yield from self._containers(usage)
        yield from self._gpu(usage)
        yield from self._walltime(usage)
        duration = GaugeMetricFamily(f"{PREFIX}_metrics_read_seconds",
                                     "Time this scrape spent reading cgroups, /proc and NVML.")
        duration.add_metric([], time.perf_counter() - started)
        servers = GaugeMetricFamily(f"{PREFIX}_metrics_servers",
                                    "User servers seen on this node.")
        servers.add_metric([], len({c.server for c in usage.containers}))
        yield from (duration, servers)

    def _containers(self, usage: NodeUsage) -> Iterator[Metric]:
        labels = list(CONTAINER_LABELS)
        for suffix, text, attribute, counter in _CONTAINER_SERIES:
            family = _family(f"{PREFIX}_container_{suffix}", text, labels, counter)
            for container in usage.containers:
                value = getattr(container.stats, attribute)
                if value is not None:
                    family.add_metric(container.label_values(), value)
            yield family
        for resource in ("cpu", "memory", "io"):
            for kind, word, who in _PRESSURE_KINDS:
                family = CounterMetricFamily(
                    f"{PREFIX}_container_pressure_{resource}_{word}_seconds",
                    f"Time {who} of the container's tasks were stalled on {resource} (PSI "
                    f"'{kind}').", labels=labels)
                for container in usage.containers:
                    total = container.stats.pressure.get(resource, {}).get(kind)
                    if total is not None:
                        family.add_metric(container.label_values(), total)
                yield family

    def _gpu(self, usage: NodeUsage) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            f"{PREFIX}_container_accelerator_memory_used_bytes",
            "GPU memory used by the container's processes, per GPU (or MIG device).",
            labels=list(GPU_LABELS))
        total = GaugeMetricFamily(
            f"{PREFIX}_container_accelerator_memory_total_bytes",
            "Memory of each GPU (or MIG device) the container uses.", labels=list(GPU_LABELS))
        limit = GaugeMetricFamily(
            f"{PREFIX}_container_spec_accelerator_memory_limit_bytes",
            "GPU memory the container was given (configured per GPU resource unit).",
            labels=list(CONTAINER_LABELS))
        for container in usage.containers:
            for use in container.gpu:
                values = [*container.label_values(), use.device.index, use.device.uuid,
                          use.device.name]
                used.add_metric(values, use.memory_used_bytes)
                total.add_metric(values, use.device.memory_total_bytes)
            if container.gpu_memory_limit_bytes is not None:
                limit.add_metric(container.label_values(), container.gpu_memory_limit_bytes)
        yield from (used, total, limit)

    def _walltime(self, usage: NodeUsage) -> Iterator[Metric]:
        labels = list(SERVER_LABELS)
        limit = GaugeMetricFamily(f"{PREFIX}_walltime_limit_seconds",
                                  "Time limit of the server's session.", labels=labels)
        remaining = GaugeMetricFamily(f"{PREFIX}_walltime_remaining_seconds",
                                      "Seconds left before the server is stopped.",
                                      labels=labels)
        deadline = GaugeMetricFamily(f"{PREFIX}_walltime_deadline_timestamp_seconds",
                                     "When the server will be stopped (Unix time).",
                                     labels=labels)
        for walltime in usage.walltimes:
            values = walltime.server.values()
            limit.add_metric(values, walltime.limit_seconds)
            remaining.add_metric(values, walltime.remaining_seconds)
            deadline.add_metric(values, walltime.deadline_timestamp)
        yield from (limit, remaining, deadline)


def _family(name: str, text: str, labels: list[str],
            counter: bool) -> GaugeMetricFamily | CounterMetricFamily:
    if counter:
        return CounterMetricFamily(name, text, labels=labels)
    return GaugeMetricFamily(name, text, labels=labels)
