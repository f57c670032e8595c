"""The node agent end to end: API double (list + watch), synthetic cgroup v2 node, NVML double.

Exposition output is checked three ways: values against the files they came from, parsed by
prometheus-client's parser, and by ``promtool check metrics`` (Debian's prometheus package).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.cgroup_tree import (
    MIB,
    Pod,
    build_node,
    build_node_v1,
    pod_dir,
    pod_json,
)
from harness.hub import free_port
from harness.kube_api import KubeApi, role_rules
from harness.sample_node import DEADLINE, NODE, nvml, user_pods
from harness.tools import REPO, VENV_BIN, require_tool, wait_http
from services.metrics.exporter import render
from services.metrics.gpu import GpuReader
from services.metrics.kube_source import KubernetesSource
from services.metrics.pods import PodIndex
from services.runtime.kube_watch import PodWatcher

P = "jupyterhub_sidecars_"
def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    hits = [v for (n, ls), v in found.items()
            if n == name and set(labels.items()) <= set(ls)]
    assert len(hits) == 1, f"{name} {labels}: {len(hits)} samples"
    return hits[0]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[KubeApi]:
    api = KubeApi(rules=role_rules(str(REPO / "deploy/metrics/rbac.yaml"),
                                   "jupyterhub-sidecars-metrics"))
    await api.start()
    yield api
    await api.stop()


async def load_kubeconfig(api: KubeApi, tmp_path: Path) -> Any:
    from kubernetes_asyncio import client, config

    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(api.kubeconfig()))
    await config.load_kube_config(config_file=str(path))
    return client


async def wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def fake_proc(tmp_path: Path, pods: list[Pod], driver_root: Path) -> Path:
    """``/proc/<pid>/cgroup`` of the GPU processes, as a hostPID agent sees them."""
    proc = tmp_path / "proc"
    for pod in pods:
        for container in pod.containers:
            for pid in container.pids:
                directory = pod_dir(driver_root, pod, "systemd")
                line = "0::/" + str(directory.relative_to(driver_root)) + \
                    f"/cri-containerd-{container.id}.scope\n"
                (proc / str(pid)).mkdir(parents=True)
                (proc / str(pid) / "cgroup").write_text(line)
    (proc / "9999").mkdir(parents=True)  # a GPU process of no user pod (the host's)
    (proc / "9999" / "cgroup").write_text("0::/system.slice/dcgm.service\n")
    return proc


async def test_series_carry_hub_labels_and_the_files_values(api: KubeApi,
                                                            tmp_path: Path) -> None:
    pods = user_pods()
    other = Pod("x", hub_pod=False)
    elsewhere = Pod("dave")
    cgroups = tmp_path / "cgroup"
    build_node(cgroups, [*pods, other, elsewhere])
    for pod in [*pods, other]:
        await api.put(pod_json(pod, NODE))
    await api.put(pod_json(elsewhere, "node-2"))
    client = await load_kubeconfig(api, tmp_path)
    index = PodIndex({"mortalgpu/v100": 1024 * MIB})
    async with client.ApiClient() as api_client:
        watcher = PodWatcher(client.CoreV1Api(api_client), index, namespace="jhub", node=NODE,
                             label_selector="component=singleuser-server", watch_timeout=2)
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(lambda: index.synced)
            assert {p.user for p in index.pods.values()} == {"alice", "bob@example.org"}
            source = KubernetesSource(index, cgroup_root=str(cgroups),
                                      proc_root=str(fake_proc(tmp_path, pods, cgroups)),
                                      gpu=GpuReader(nvml()))
            text = render(source.read())
        finally:
            task.cancel()
    found = samples(text)
    alice = {"user": "alice", "server": "", "namespace": "jhub", "pod": "jupyter-alice"}
    assert value(found, P + "container_memory_working_set_bytes", **alice,
                 container="notebook", profile="a100-10g") == 400 * MIB
    assert value(found, P + "container_memory_usage_bytes", **alice,
                 container="walltime") == 30 * MIB
    assert value(found, P + "container_spec_memory_limit_bytes", **alice,
                 container="notebook") == 51200 * MIB
    assert value(found, P + "container_cpu_usage_seconds_total", **alice,
                 container="notebook") == pytest.approx(12.345678)
    assert value(found, P + "container_cpu_cfs_throttled_periods_total", **alice,
                 container="notebook") == 7
    assert value(found, P + "container_pressure_memory_waiting_seconds_total", **alice,
                 container="notebook") == 1.5
    assert value(found, P + "container_oom_events_total", **alice, container="notebook") == 0
    assert value(found, P + "walltime_limit_seconds", **alice) == 1800
    remaining = value(found, P + "walltime_remaining_seconds", **alice)
    # DEADLINE is fixed when the module is collected, minutes before this test may run.
    expected = (DEADLINE - datetime.now(UTC)).total_seconds()
    assert expected - 5 < remaining <= expected + 1
    assert value(found, P + "walltime_deadline_timestamp_seconds", **alice) == \
        pytest.approx(DEADLINE.timestamp())
    bob = {"user": "bob@example.org", "server": "gpu", "container": "notebook"}
    assert value(found, P + "container_accelerator_memory_used_bytes", **bob,
                 gpu="0", model="NVIDIA A100-SXM4-40GB") == 1164 * 10**6
    assert value(found, P + "container_accelerator_memory_total_bytes", **bob) == 40 * 2**30
    assert value(found, P + "container_spec_accelerator_memory_limit_bytes", **bob) == \
        10 * 1024 * MIB
    # nothing of the other workload, of the other node, of sandboxes, of the host GPU process
    assert "user=\"dave\"" not in text and "jupyter-x" not in text
    assert not any(ls and dict(ls).get("container") == "pause" for (_, ls) in found)
    assert sum(1 for (n, _) in found if n == P + "container_accelerator_memory_used_bytes") == 1
    check_with_promtool(text, tmp_path)


def check_with_promtool(text: str, tmp_path: Path) -> None:
    promtool = require_tool("promtool", REPO / ".tools" / "prometheus" / "usr" / "bin")
    result = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


async def test_watch_follows_pods_and_relists_after_410(api: KubeApi, tmp_path: Path) -> None:
    alice, bob = user_pods()
    await api.put(pod_json(alice, NODE))
    client = await load_kubeconfig(api, tmp_path)
    index = PodIndex()
    async with client.ApiClient() as api_client:
        watcher = PodWatcher(client.CoreV1Api(api_client), index, namespace="jhub", node=NODE,
                             label_selector="component=singleuser-server", watch_timeout=1,
                             request_timeout=3)
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(lambda: set(index.pods) == {alice.uid})
            await api.put(pod_json(bob, NODE))
            await wait_for(lambda: set(index.pods) == {alice.uid, bob.uid})
            await api.delete(alice.uid)  # the pod died / the server stopped
            await wait_for(lambda: set(index.pods) == {bob.uid})
            lists = sum(1 for r in api.requests if "watch" not in r)
            # Cut off while a pod starts and etcd compacts: when the agent is back, its
            # resourceVersion is gone (410) and only a new list can catch up.
            await api.cut_off(True)
            carol = Pod("carol")
            await api.put(pod_json(carol, NODE))
            await api.compact()
            await asyncio.sleep(0.3)
            await api.cut_off(False)
            await wait_for(lambda: sum(1 for r in api.requests if "watch" not in r) > lists,
                           timeout=10)
            await wait_for(lambda: set(index.pods) == {bob.uid, carol.uid}, timeout=20)
        finally:
            task.cancel()
    watches = [r for r in api.requests if "watch" in r]
    assert all("fieldSelector=spec.nodeName%3Dnode-1" in r for r in api.requests)
    assert all("labelSelector=component%3Dsingleuser-server" in r for r in watches)
    assert any("resourceVersion=" in r for r in watches)


def run_agent(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([str(VENV_BIN / "jupyterhub-sidecars"), "metrics", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


async def test_agent_process_serves_metrics_usage_and_stops_on_sigterm(
        api: KubeApi, tmp_path: Path) -> None:
    pods = user_pods()
    cgroups = tmp_path / "cgroup"
    build_node(cgroups, pods, driver="cgroupfs", runtime="crio")
    for pod in pods:
        await api.put(pod_json(pod, NODE, runtime="crio"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()))
    port = free_port()
    process = run_agent("--source", "kubernetes", "--kubeconfig", str(kubeconfig),
                        "--node-name", NODE, "--namespace", "jhub", "--cgroup-root",
                        str(cgroups), "--port", str(port), "--host", "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_http, base + "/healthz", status=200, timeout=30)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(base + "/metrics")).text
            usage = (await http.get(base + "/usage")).json()
        found = samples(metrics)
        assert value(found, P + "container_memory_working_set_bytes", user="bob@example.org",
                     container="notebook") == 2000 * MIB
        by_user = {s["user"]: s for s in usage["servers"]}
        assert by_user["alice"]["walltime"]["limit"] == 1800
        assert by_user["alice"]["containers"]["notebook"]["memory"]["used_bytes"] == 400 * MIB
        assert by_user["bob@example.org"]["containers"]["notebook"]["gpu"] == []
        assert value(found, P + "metrics_servers") == 2
        check_with_promtool(metrics, tmp_path)
        # The node's containers vanish from where the agent looks (a wrong root, a cgroup
        # layout it does not know): /healthz fails and says why, not an empty node.
        async with httpx.AsyncClient() as http:
            health = (await http.get(base + "/healthz")).json()
            assert health == {"ok": True, "problem": None,
                              "cgroups": f"cgroup v2 at {cgroups}"}
            shutil.rmtree(cgroups / "kubepods")
            await http.get(base + "/metrics")
            broken = await http.get(base + "/healthz")
        assert broken.status_code == 503
        assert "user containers run on this node but none was found" in \
            broken.json()["problem"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        output = process.communicate()[0]
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(r["message"] == "listed 2 user pod(s)" for r in logs), output


@pytest.mark.parametrize(("args", "message"), [
    (["--source", "kubernetes", "--namespace", "jhub"], "METRICS_NODE_NAME is required"),
    (["--kubeconfig", "/nonexistent"], "METRICS_KUBECONFIG='/nonexistent' is not a file"),
    (["--gpu-memory-per-unit", "mortalgpu/v100"], "expected resource=quantity"),
    (["--gpu-memory-per-unit", "x=lots"], "not a byte quantity"),
    (["--port", "0"], "port"),
    (["--source", "cloud"], "source"),
])
def test_bad_settings_exit_2_with_one_line(args: list[str], message: str) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    process = run_agent(*args, env=env)
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 2, output
    assert message in output and len(output.strip().splitlines()) == 1, output


def test_module_entry_point_has_the_metrics_command() -> None:
    result = subprocess.run([sys.executable, "-m", "services", "metrics", "--help"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert "--gpu-memory-per-unit" in result.stdout and "METRICS_NODE_NAME" in result.stdout


def _source_for(tmp_path: Path, pods: list[Pod], cgroups: Path, proc: Path | None = None,
                runtime: str = "containerd") -> KubernetesSource:
    index = PodIndex()
    index.replace([pod_json(p, NODE, runtime=runtime) for p in pods])
    return KubernetesSource(index, cgroup_root=str(cgroups), proc_root=str(proc or tmp_path),
                            gpu=None)


def test_a_cgroup_v1_node_is_read_through_its_memory_and_cpu_hierarchies(
        tmp_path: Path) -> None:
    pods = user_pods()
    cgroups = tmp_path / "cgroup"
    build_node_v1(cgroups, pods)
    source = _source_for(tmp_path, pods, cgroups)
    assert source.layout.version == 1
    found = samples(render(source.read()))
    alice = {"user": "alice", "server": "", "namespace": "jhub", "pod": "jupyter-alice"}
    assert value(found, P + "container_memory_working_set_bytes", **alice,
                 container="notebook", profile="a100-10g") == 400 * MIB
    assert value(found, P + "container_spec_memory_limit_bytes", **alice,
                 container="notebook") == 51200 * MIB
    assert value(found, P + "container_cpu_usage_seconds_total", **alice,
                 container="notebook") == pytest.approx(12.345678)
    assert value(found, P + "container_cpu_cfs_throttled_periods_total", **alice,
                 container="notebook") == 7
    assert source.problem is None


@pytest.mark.parametrize("driver", ["kind", "systemd", "cgroupfs"])
def test_kubelet_cgroup_roots_and_drivers_are_found(tmp_path: Path, driver: str) -> None:
    pods = user_pods()
    cgroups = tmp_path / "cgroup"
    build_node(cgroups, pods, driver=driver)
    source = _source_for(tmp_path, pods, cgroups)
    usage = source.read()
    assert {c.server.user for c in usage.containers} == {"alice", "bob@example.org"}
    assert source.problem is None


def test_crun_processes_one_level_below_the_container_are_attributed(tmp_path: Path) -> None:
    """CRI-O with crun on v2: ``crio-<id>.scope/container`` holds the processes."""
    pods = user_pods()
    cgroups = tmp_path / "cgroup"
    build_node(cgroups, pods, runtime="crio")
    bob = pods[1]
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    directory = pod_dir(Path("/"), bob, "systemd")
    (proc / "4242" / "cgroup").write_text(
        f"0::{directory}/crio-{bob.containers[0].id}.scope/container\n")
    (proc / "4343").mkdir(parents=True)  # the same on a v1 node: the memory line
    (proc / "4343" / "cgroup").write_text(
        f"12:memory:/kubepods/pod{bob.uid}/{bob.containers[0].id}\n"
        "3:cpu,cpuacct:/kubepods/whatever\n0::/\n")
    source = _source_for(tmp_path, pods, cgroups, proc, runtime="crio")
    assert source.container_of_pid(4242) == bob.containers[0].id
    assert source.container_of_pid(4343) == bob.containers[0].id
    assert source.container_of_pid(1) is None


def test_a_node_whose_containers_cannot_be_found_is_unhealthy_and_says_why(
        tmp_path: Path) -> None:
    pods = user_pods()
    empty = tmp_path / "cgroup"
    (empty / "kubepods.slice").mkdir(parents=True)
    (empty / "cgroup.controllers").write_text("cpu memory\n")
    source = _source_for(tmp_path, pods, empty)
    assert source.read().containers == []
    assert source.problem is not None and "3 user containers run on this node but none " \
        "was found under cgroup v2 at" in source.problem
    nothing = _source_for(tmp_path, pods, tmp_path / "nowhere")
    assert nothing.problem is not None and "no cgroup v2" in nothing.problem
    quiet = _source_for(tmp_path, [], empty)  # no user containers here: nothing to find
    quiet.read()
    assert quiet.problem is None
