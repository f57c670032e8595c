"""The Grafana dashboard (deploy/metrics/grafana): generated from code, and every panel's
query answered with data by a real Prometheus (Debian's, unpacked by make setup) scraping
the node agent's real serving path (on a node of real cgroup file formats, with the NVML
double — no GPU here), the walltime backstop of a real hub, and a real kubepie gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from harness.cgroup_tree import build_node, pod_json
from harness.gateway import Gateway, remove, temp_root
from harness.hub import Hub, free_port
from harness.oidc import OidcProvider
from harness.sample_node import NODE, nvml, user_pods
from harness.tools import REPO, require_tool, stop_process
from services.metrics import dashboard
from services.metrics.gpu import GpuReader
from services.metrics.kube_source import KubernetesSource
from services.metrics.main import _serve
from services.metrics.pods import PodIndex
from services.metrics.settings import AgentSettings

pytestmark = pytest.mark.slow

COMMITTED = REPO / "deploy" / "metrics" / "grafana" / "jupyterhub-sidecars.json"


def test_the_committed_dashboard_is_the_generated_one() -> None:
    """Edit services/metrics/dashboard.py and regenerate, never the JSON."""
    assert COMMITTED.read_text() == dashboard.render(), \
        "regenerate: python -m services.metrics.dashboard > " + str(COMMITTED.relative_to(REPO))
    board = json.loads(COMMITTED.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) == len(dashboard.queries()) >= 14
    assert board["uid"] == dashboard.UID and board["__inputs"][0]["pluginId"] == "prometheus"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    provider = OidcProvider(tmp_path / "provider.log")
    provider.start()
    root = temp_root()
    instance = Gateway(provider, root).start()
    yield instance
    instance.stop()
    provider.stop()
    remove(root)


def prometheus(tmp_path: Path, targets: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    binary = require_tool("prometheus", REPO / ".tools" / "prometheus" / "usr" / "bin")
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                 for job, target in targets.items()]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(tmp_path / "prometheus.log").open("wb"), stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


async def test_every_panel_query_returns_data_from_a_real_prometheus(
        tmp_path: Path, hub: Hub, gateway: Gateway) -> None:
    pods = user_pods()
    build_node(tmp_path / "cgroup", pods)
    index = PodIndex({"mortalgpu/v100": 1024 * 2**20})
    index.replace([pod_json(p, NODE) for p in pods])
    proc = tmp_path / "proc" / "4242"  # bob's GPU process, as a hostPID agent sees it
    proc.mkdir(parents=True)
    bob = pods[1]
    proc.joinpath("cgroup").write_text(
        f"0::/kubepods.slice/kubepods-pod{bob.uid.replace('-', '_')}.slice/"
        f"cri-containerd-{bob.containers[0].id}.scope\n")
    source = KubernetesSource(index, cgroup_root=str(tmp_path / "cgroup"),
                              proc_root=str(tmp_path / "proc"), gpu=GpuReader(nvml()))
    agent_port = free_port()
    httpx.get(gateway.url + "/", timeout=10)  # a request the gateway counts (401)
    server, url = prometheus(tmp_path, {
        "agent": f"127.0.0.1:{agent_port}", "backstop": f"127.0.0.1:{hub.backstop_port}",
        "gateway": f"127.0.0.1:{gateway.port}"})
    empty: dict[str, str] = {}

    async def check() -> int:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    answer = await client.get("/api/v1/query", params={"query": "up"})
                    # 503 "Service Unavailable" (text) while Prometheus is still starting
                    up = answer.json() if answer.status_code == 200 else {}
                except httpx.TransportError:  # not listening yet
                    up = {}
                healthy = {r["metric"]["job"] for r in up.get("data", {}).get("result", [])
                           if r["value"][1] == "1"}
                if healthy == {"agent", "backstop", "gateway"}:
                    break
                assert time.monotonic() < deadline, f"targets not up: {up}"
                await asyncio.sleep(0.5)
            # rate() needs two samples in its window: ask again until every panel has data
            # (a loaded machine scrapes late), for at most a minute.
            deadline = time.monotonic() + 60
            while True:
                empty.clear()
                for query in dashboard.queries():
                    answer = (await client.get("/api/v1/query", params={"query": query})).json()
                    assert answer["status"] == "success", (query, answer)
                    if not answer["data"]["result"]:
                        empty[query] = json.dumps(answer)
                if not empty or time.monotonic() > deadline:
                    return 0
                await asyncio.sleep(1)

    try:
        settings = AgentSettings(host="127.0.0.1", port=agent_port, source="local")
        assert await _serve(settings, source.read, check, lambda: True) == 0
    finally:
        stop_process(server, 10)
    assert empty == {}, "panels without data:\n" + "\n".join(empty)
