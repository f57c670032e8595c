"""What the hooks cost at spawn and stop on Kubernetes: API requests and milliseconds.

A real KubeSpawner starts and stops pods against the Kubernetes API double (harness/kube_api.py,
the kubelet reports each pod running at once), N times without our hooks and N times with
them (the user's identity, walltime and tokenhelper sidecars, the server's Secret), in
alternating rounds. Printed: the API requests per spawn+stop by kind, and the medians.

    python -m benchmarks.spawn_cost --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from kubespawner.clients import load_config
from traitlets.config import Config

from harness.kube_api import KubeApi
from harness.pod_plan import NOTEBOOK_TOKEN, full_plan
from services.hub.hooks import (
    PLAN_ATTRIBUTE,
    after_pod_created_hook,
    delete_server_secret,
    modify_pod_hook,
)


async def _kubelet(api: KubeApi, pod: dict[str, Any]) -> None:
    meta = pod["metadata"]
    statuses = [{"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"],
                 "imageID": "", "state": {"running": {}}} for c in pod["spec"]["containers"]]
    await api.set_status(meta["namespace"], meta["name"], {
        "phase": "Running", "podIP": "10.1.2.3", "containerStatuses": statuses,
        "conditions": [{"type": "Ready", "status": "True"}]})


def _spawner(hooks: bool, n: int) -> KubeSpawner:
    settings: dict[str, Any] = {"namespace": "jhub", "start_timeout": 30,
                                "pod_name_template": f"jupyter-bench-{n}"}
    if hooks:
        settings |= {"modify_pod_hook": modify_pod_hook,
                     "after_pod_created_hook": after_pod_created_hook}
    spawner = KubeSpawner(_mock=True, config=Config({"KubeSpawner": settings}))
    spawner.api_token = NOTEBOOK_TOKEN
    if hooks:
        setattr(spawner, PLAN_ATTRIBUTE, full_plan())
    return spawner


async def _one(api: KubeApi, hooks: bool, n: int) -> tuple[float, Counter[str]]:
    spawner = _spawner(hooks, n)
    before = len(api.requests)
    started = time.perf_counter()
    await spawner.start()
    elapsed = time.perf_counter() - started
    await spawner.stop(now=True)
    if hooks:
        await delete_server_secret(spawner)  # what post_stop_hook adds
    kinds = Counter(_kind(r) for r in api.requests[before:])
    return elapsed * 1000, kinds


def _kind(request: str) -> str:
    method, _, target = request.partition(" ")
    if not target:  # list/watch requests are logged by path only
        target, method = method, "GET"
    path = target.split("?")[0]
    resource = "secrets" if "/secrets" in path else "pods" if "/pods" in path else path
    if "watch=" in target:
        method = "WATCH"
    return f"{method} {resource}"


async def main(rounds: int) -> None:
    api = KubeApi()
    await api.start()
    api.on_created = lambda pod: _kubelet(api, pod)
    folder = Path(tempfile.mkdtemp())
    config = api.kubeconfig()
    config["contexts"][0]["context"]["namespace"] = "jhub"
    (folder / "kubeconfig").write_text(yaml.safe_dump(config))
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(folder / "kubeconfig")
    load_config.cache_clear()
    times: dict[bool, list[float]] = {False: [], True: []}
    requests: dict[bool, Counter[str]] = {False: Counter(), True: Counter()}
    try:
        await _one(api, False, 0)  # warm up the reflectors and the client
        for n in range(rounds):
            for hooks in (False, True):
                elapsed, kinds = await _one(api, hooks, n + 1)
                times[hooks].append(elapsed)
                requests[hooks] += kinds
    finally:
        for reflector in list(KubeSpawner.reflectors.values()):
            await reflector.stop()
        await api.stop()
    for hooks in (False, True):
        per_spawn = {k: round(v / rounds, 1) for k, v in sorted(requests[hooks].items())}
        print(f"{'with hooks   ' if hooks else 'without hooks'}: start median "
              f"{statistics.median(times[hooks]):.1f} ms (p90 "
              f"{sorted(times[hooks])[int(rounds * 0.9) - 1]:.1f}); API requests per "
              f"spawn+stop: {per_spawn}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
