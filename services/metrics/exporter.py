"""Prometheus text exposition of a node read, named like cAdvisor's series where they overlap.

Rendered here rather than through prometheus-client's collector API: a node with 200 user pods
has ~10,000 samples, and the library's per-sample label validation and escaping took 100 ms
of a scrape (measured in benchmarks/metrics_scrape.py). Labels are escaped once per
container; the output is checked by prometheus-client's parser and by promtool in the tests.
Every series carries user, server, profile, namespace, pod (and container). A limit that is not
set produces no sample rather than a misleading 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from services.contract import METRIC_PREFIX
from services.metrics.model import ContainerUsage, NodeUsage, Walltime

GAUGE, COUNTER = "gauge", "counter"


@dataclass(frozen=True)
class Family:
    name: str  # counters end in _total here, as in the exposition
    kind: str
    help: str
    value: Callable[[Any], float | int | None]


def _stat(attribute: str) -> Callable[[ContainerUsage], Any]:
    return lambda c: getattr(c.stats, attribute)


def _pressure(resource: str, kind: str) -> Callable[[ContainerUsage], float | None]:
    return lambda c: c.stats.pressure.get(resource, {}).get(kind)


CONTAINER_FAMILIES = [
    Family(f"{METRIC_PREFIX}_container_memory_usage_bytes", GAUGE,
           "Memory charged to the container, page cache included.",
           _stat("memory_usage_bytes")),
    Family(f"{METRIC_PREFIX}_container_memory_working_set_bytes", GAUGE,
           "Memory usage minus inactive page cache (what the kubelet and OOM killer watch).",
           _stat("memory_working_set_bytes")),
    Family(f"{METRIC_PREFIX}_container_memory_rss_bytes", GAUGE,
           "Anonymous memory of the container.",
           _stat("memory_rss_bytes")),
    Family(f"{METRIC_PREFIX}_container_memory_max_usage_bytes", GAUGE,
           "Highest memory usage seen (memory.peak).", _stat("memory_peak_bytes")),
    Family(f"{METRIC_PREFIX}_container_spec_memory_limit_bytes", GAUGE,
           "Memory limit of the container.", _stat("memory_limit_bytes")),
    Family(f"{METRIC_PREFIX}_container_oom_events_total", COUNTER,
           "Processes of the container killed by the OOM killer.", _stat("oom_kills")),
    Family(f"{METRIC_PREFIX}_container_cpu_usage_seconds_total", COUNTER,
           "CPU time used by the container.", _stat("cpu_usage_seconds")),
    Family(f"{METRIC_PREFIX}_container_spec_cpu_limit", GAUGE,
           "CPU limit of the container in CPUs (CFS quota / period).", _stat("cpu_limit")),
    Family(f"{METRIC_PREFIX}_container_cpu_cfs_periods_total", COUNTER,
           "Enforcement periods that elapsed.", _stat("cpu_periods")),
    Family(f"{METRIC_PREFIX}_container_cpu_cfs_throttled_periods_total", COUNTER,
           "Periods in which the container was throttled.", _stat("cpu_throttled_periods")),
    Family(f"{METRIC_PREFIX}_container_cpu_cfs_throttled_seconds_total", COUNTER,
           "Time the container was throttled.", _stat("cpu_throttled_seconds")),
    *(Family(f"{METRIC_PREFIX}_container_pressure_{resource}_{word}_seconds_total", COUNTER,
             f"Time {who} of the container's tasks were stalled on {resource} (PSI "
             f"'{kind}').", _pressure(resource, kind))
      for resource in ("cpu", "memory", "io")
      for kind, word, who in (("some", "waiting", "some"), ("full", "stalled", "all"))),
    Family(f"{METRIC_PREFIX}_container_spec_accelerator_memory_limit_bytes", GAUGE,
           "GPU memory the container was given (configured per GPU resource unit).",
           lambda c: c.gpu_memory_limit_bytes),
]
GPU_FAMILIES = [
    Family(f"{METRIC_PREFIX}_container_accelerator_memory_used_bytes", GAUGE,
           "GPU memory used by the container's processes, per GPU (or MIG device).",
           lambda use: use.memory_used_bytes),
    Family(f"{METRIC_PREFIX}_container_accelerator_memory_total_bytes", GAUGE,
           "Memory of each GPU (or MIG device) the container uses.",
           lambda use: use.device.memory_total_bytes),
]
WALLTIME_FAMILIES = [
    Family(f"{METRIC_PREFIX}_walltime_limit_seconds", GAUGE, "Time limit of the server's session.",
           lambda w: w.limit_seconds),
    Family(f"{METRIC_PREFIX}_walltime_remaining_seconds", GAUGE,
           "Seconds left before the server is stopped.", lambda w: w.remaining_seconds),
    Family(f"{METRIC_PREFIX}_walltime_deadline_timestamp_seconds", GAUGE,
           "When the server will be stopped (Unix time).", lambda w: w.deadline_timestamp),
]


def escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{escape(value)}"' for name, value in pairs)


def number(value: float | int) -> str:
    if type(value) is int or math.isfinite(value):
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _container_labels(c: ContainerUsage) -> str:
    s = c.server
    return labels((("namespace", s.namespace), ("pod", s.pod), ("container", c.container),
                   ("user", s.user), ("server", s.server), ("profile", s.profile)))


def _server_labels(w: Walltime) -> str:
    s = w.server
    return labels((("namespace", s.namespace), ("pod", s.pod), ("user", s.user),
                   ("server", s.server), ("profile", s.profile)))


def render(usage: NodeUsage) -> str:
    """Text format 0.0.4 for every family, HELP and TYPE included even when empty."""
    out: list[str] = []
    containers = [(c, _container_labels(c)) for c in usage.containers]
    for family in CONTAINER_FAMILIES:
        _header(out, family)
        for container, text in containers:
            value = family.value(container)
            if value is not None:
                out.append(f"{family.name}{{{text}}} {number(value)}\n")
    gpu_rows = [(use, text + "," + labels((("gpu", use.device.index),
                                           ("gpu_uuid", use.device.uuid),
                                           ("model", use.device.name))))
                for container, text in containers for use in container.gpu]
    for family in GPU_FAMILIES:
        _header(out, family)
        out.extend(f"{family.name}{{{text}}} {number(family.value(use))}\n"  # type: ignore[arg-type]
                   for use, text in gpu_rows)
    walltimes = [(w, _server_labels(w)) for w in usage.walltimes]
    for family in WALLTIME_FAMILIES:
        _header(out, family)
        out.extend(f"{family.name}{{{text}}} {number(family.value(w))}\n"  # type: ignore[arg-type]
                   for w, text in walltimes)
    return "".join(out)


def _header(out: list[str], family: Family) -> None:
    out.append(f"# HELP {family.name} {family.help}\n# TYPE {family.name} {family.kind}\n")
