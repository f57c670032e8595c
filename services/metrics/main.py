"""``jupyterhub-sidecars metrics``: the node agent (a DaemonSet, or one machine alone)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from services.contract import METRIC_PREFIX
from services.metrics.exporter import render
from services.metrics.gpu import GpuReader
from services.metrics.kube_source import KubernetesSource
from services.metrics.local_source import LocalSource
from services.metrics.model import NodeUsage
from services.metrics.pods import PodIndex
from services.metrics.settings import AgentSettings
from services.runtime.kube_watch import PodWatcher
from services.runtime.logs import configure_logging
from services.runtime.settings import (
    add_setting_flags,
    run_service_main,
)
from services.runtime.webapp import make_app, run_service, until_stopped

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_flags(parser, AgentSettings)


def main(args: argparse.Namespace) -> int:
    return run_service_main("metrics", AgentSettings, args, run_agent)


async def run_agent(settings: AgentSettings) -> int:
    configure_logging("metrics", settings.log_level)
    gpu = GpuReader() if settings.gpu else None
    if settings.resolved_source() == "kubernetes":
        return await _kubernetes(settings, gpu)
    source = LocalSource(proc_root=settings.proc_root, gpu=gpu)
    try:
        return await _serve(settings, source.read, until_stopped, lambda: True)
    finally:
        source.close()


async def _kubernetes(settings: AgentSettings, gpu: GpuReader | None) -> int:
    from kubernetes_asyncio import client

    from services.runtime.kube_config import load_kube_config

    await load_kube_config(settings.kubeconfig)
    async with client.ApiClient() as api_client:
        index = PodIndex(settings.gpu_memory_per_unit)
        watcher = PodWatcher(client.CoreV1Api(api_client), index,
                             namespace="" if settings.namespace == "*" else settings.namespace,
                             node=settings.node_name, label_selector=settings.label_selector)
        source = KubernetesSource(index, cgroup_root=settings.cgroup_root,
                                  proc_root=settings.proc_root, gpu=gpu)

        async def watch() -> int:
            await watcher.run()
            return 1

        # Ready once the first list arrived: before that, every server would look absent;
        # unhealthy (with the reason) when this node's containers cannot be found.
        return await _serve(settings, source.read, watch,
                            lambda: index.synced and source.problem is None,
                            lambda: {"problem": source.problem,
                                     "cgroups": source.layout.describe()})


async def _serve(settings: AgentSettings, read: Callable[[], NodeUsage],
                 main: Callable[[], Any], healthy: Callable[[], bool],
                 details: Callable[[], dict[str, Any]] | None = None) -> int:
    registry = CollectorRegistry()
    read_seconds = Gauge(f"{METRIC_PREFIX}_metrics_read_seconds",
                         "Time the last scrape spent reading cgroups, /proc and NVML.",
                         registry=registry)
    servers = Gauge(f"{METRIC_PREFIX}_metrics_servers", "User servers seen on this node.",
                    registry=registry)

    def exposition() -> bytes:
        started = time.perf_counter()
        usage = read()
        read_seconds.set(time.perf_counter() - started)
        servers.set(len({c.server for c in usage.containers}))
        return render(usage).encode() + generate_latest(registry)

    app = make_app(registry, healthy, exposition, details=details)

    async def usage(_: web.Request) -> web.Response:
        snapshot = await asyncio.to_thread(read)
        return web.json_response({"servers": snapshot.by_server()},
                                 headers={"Cache-Control": "no-store"})

    app.router.add_get("/usage", usage)
    return await run_service(app, main, host=settings.host, port=settings.port)
