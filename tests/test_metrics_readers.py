"""The agent's readers on synthetic cgroup trees (real file formats) and an NVML double."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pynvml
import pytest

from harness.cgroup_tree import MIB, Container, Pod, build_node, write_container
from harness.nvml_double import FakeGpu, NvmlDouble
from services.metrics.cgroups import (
    own_cgroup,
    parse_cpu_max,
    parse_pressure,
    pressure_totals,
    read_v2,
    stat_value,
)
from services.metrics.gpu import GpuReader
from services.metrics.podmap import container_id_of, pod_uid_of, scan
from services.metrics.quantities import parse_bytes, parse_per_unit


def test_v2_container_figures_come_from_the_right_files(tmp_path: Path) -> None:
    container = Container("notebook", memory_current=450 * MIB, inactive_file=70 * MIB,
                          anon=300 * MIB, memory_max=2048 * MIB, memory_peak=900 * MIB,
                          oom_kill=2, usage_usec=3_500_000, nr_periods=40, nr_throttled=9,
                          throttled_usec=1_200_000, cpu_quota=150_000,
                          pressure_total_usec=2_000_000)
    write_container(tmp_path, container)
    stats = read_v2(str(tmp_path))
    assert stats is not None
    assert stats.memory_usage_bytes == 450 * MIB
    assert stats.memory_working_set_bytes == 380 * MIB  # current - inactive_file
    assert stats.memory_rss_bytes == 300 * MIB
    assert stats.memory_limit_bytes == 2048 * MIB
    assert stats.memory_peak_bytes == 900 * MIB
    assert stats.oom_kills == 2
    assert stats.cpu_usage_seconds == pytest.approx(3.5)
    assert stats.cpu_limit == pytest.approx(1.5)
    assert (stats.cpu_periods, stats.cpu_throttled_periods) == (40, 9)
    assert stats.cpu_throttled_seconds == pytest.approx(1.2)
    assert stats.pressure["memory"] == {"some": 2.0, "full": pytest.approx(2 / 3, abs=1e-6)}
    assert stats.pressure["cpu"]["some"] == 4.0 and stats.pressure["io"]["some"] == 1.0


def test_unlimited_and_old_kernels_give_none_not_zero(tmp_path: Path) -> None:
    write_container(tmp_path, Container("n", memory_max=None, memory_peak=None, cpu_quota=None))
    for name in ("memory.pressure", "cpu.pressure", "io.pressure"):
        (tmp_path / name).unlink()  # PSI disabled (psi=0 on the kernel command line)
    stats = read_v2(str(tmp_path))
    assert stats is not None
    assert stats.memory_limit_bytes is None and stats.cpu_limit is None
    assert stats.memory_peak_bytes is None and stats.pressure == {}


def test_a_vanished_cgroup_reads_as_none(tmp_path: Path) -> None:
    assert read_v2(str(tmp_path / "gone")) is None


def test_parsers_of_single_files() -> None:
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("50000 100000\n") == 0.5
    assert parse_cpu_max("garbage") is None
    psi = "some avg10=1.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 total=7\n"
    assert parse_pressure(psi) == pressure_totals(psi.encode()) == {"some": 2.5, "full": 7e-6}
    assert stat_value(b"anon 5\nfile 7\ninactive_file 3\n", b"file") == 7
    assert stat_value(b"anon 5\ninactive_file 3\n", b"file") is None
    assert stat_value(b"anon 5", b"anon") == 5


@pytest.mark.parametrize(("text", "expected"), [
    ("0::/\n", ("2", "")),
    ("0::/kubepods.slice/x.scope\n", ("2", "/kubepods.slice/x.scope")),
])
def test_own_cgroup_v2_inside_a_container(tmp_path: Path, text: str,
                                          expected: tuple[str, str]) -> None:
    (tmp_path / "self").write_text(text)
    root = tmp_path / "cg"
    write_container(root / expected[1].lstrip("/") if expected[1] else root, Container("n"))
    found = own_cgroup(str(tmp_path / "self"), str(root))
    assert found is not None and found.version == 2
    assert found.memory_dir == str(root) + expected[1]
    stats = found.read()
    assert stats is not None and stats.memory_usage_bytes == 450 * MIB


def test_own_cgroup_v2_root_without_memory_files_is_not_used(tmp_path: Path) -> None:
    """The host's root cgroup has no memory.current: no figures rather than host totals."""
    (tmp_path / "self").write_text("0::/\n")
    (tmp_path / "cg").mkdir()
    assert own_cgroup(str(tmp_path / "self"), str(tmp_path / "cg")) is None


@pytest.mark.parametrize("driver", ["systemd", "cgroupfs"])
@pytest.mark.parametrize("runtime", ["containerd", "crio"])
def test_scan_finds_every_container_of_every_pod(tmp_path: Path, driver: str,
                                                 runtime: str) -> None:
    pods = [Pod("alice", qos="burstable",
                containers=[Container("notebook"), Container("walltime")]),
            Pod("bob", qos="guaranteed"), Pod("carol", qos="besteffort")]
    build_node(tmp_path, pods, driver=driver, runtime=runtime)
    found = {(c.pod_uid, c.container_id) for c in scan(str(tmp_path))}
    expected = {(p.uid, c.id) for p in pods for c in p.containers}
    assert expected <= found
    # the rest are the sandboxes, which no pod status lists (conmon is never a match)
    assert len(found - expected) == len(pods)
    assert all("conmon" not in c.path for c in scan(str(tmp_path)))


def test_name_parsers() -> None:
    uid = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"
    assert pod_uid_of(f"kubepods-burstable-pod{uid.replace('-', '_')}.slice") == uid
    assert pod_uid_of(f"pod{uid}") == uid
    assert pod_uid_of("kubepods-burstable.slice") is None
    cid = "a" * 64
    assert container_id_of(f"cri-containerd-{cid}.scope") == cid
    assert container_id_of(f"crio-{cid}.scope") == cid
    assert container_id_of(f"docker-{cid}.scope") == cid
    assert container_id_of(cid) == cid
    assert container_id_of(f"crio-conmon-{cid}.scope") is None
    assert container_id_of("init.scope") is None


def test_byte_quantities() -> None:
    assert parse_bytes("10Gi") == 10 * 2**30 and parse_bytes("1G") == 10**9
    assert parse_bytes("1500") == 1500 and parse_bytes("0.5Gi") == 2**29
    assert parse_per_unit("mortalgpu/v100=1Gi, nvidia.com/mig-1g.10gb=10Gi") == {
        "mortalgpu/v100": 2**30, "nvidia.com/mig-1g.10gb": 10 * 2**30}
    with pytest.raises(ValueError, match="not a byte quantity"):
        parse_bytes("ten gigs")
    with pytest.raises(ValueError, match="expected resource=quantity"):
        parse_per_unit("mortalgpu/v100")


def test_gpu_devices_processes_and_mig() -> None:
    plain = FakeGpu(used=3 * 2**30, processes=[(101, 1164 * 10**6), (102, None)])
    slice_a = FakeGpu(name="NVIDIA A100 MIG 1g.10gb", total=10 * 2**30, used=2**30,
                      uuid="MIG-aaaa", processes=[(201, 900 * 10**6)])
    slice_b = FakeGpu(name="NVIDIA A100 MIG 1g.10gb", total=10 * 2**30, uuid="MIG-bbbb")
    mig_parent = FakeGpu(uuid="GPU-parent", mig=[slice_a, None, slice_b])
    old = FakeGpu(name="Tesla V100", uuid="GPU-old", mig_capable=False)
    reader = GpuReader(NvmlDouble([plain, mig_parent, old]))
    snapshot = reader.snapshot()
    assert [(d.index, d.uuid) for d in snapshot.devices] == [
        ("0", plain.uuid), ("1:0", "MIG-aaaa"), ("1:2", "MIG-bbbb"), ("2", "GPU-old")]
    assert snapshot.device("MIG-aaaa").memory_total_bytes == 10 * 2**30  # type: ignore[union-attr]
    by_pid = {p.pid: p for p in snapshot.processes}
    assert by_pid[101].memory_used_bytes == 1164 * 10**6
    assert by_pid[102].memory_used_bytes is None  # unknown is not zero
    assert by_pid[201].device_uuid == "MIG-aaaa"


def test_no_gpu_library_means_no_gpu_and_no_error() -> None:
    class Broken:
        NVMLError = pynvml.NVMLError

        def nvmlInit(self) -> None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    reader = GpuReader(Broken())
    assert reader.snapshot().devices == [] and not reader.available


def test_a_driver_that_is_not_ready_at_start_is_tried_again_with_backoff() -> None:
    """The agent starts before the NVIDIA driver at node boot: GPU metrics appear once it
    loads, not never. Attempts at 0, 5, 15, 35 s … (doubling to 5 min), none in between."""
    double = NvmlDouble([FakeGpu(uuid="GPU-a")])
    driver = {"loaded": False, "attempts": 0}
    real_init = double.nvmlInit

    def init() -> None:
        driver["attempts"] += 1
        if not driver["loaded"]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
        real_init()

    double.nvmlInit = init  # type: ignore[method-assign]
    now = [0.0]
    reader = GpuReader(double, clock=lambda: now[0])
    for at in (0, 1, 4.9, 5, 14, 15, 34, 35):
        now[0] = at
        assert reader.snapshot().devices == []
    assert driver["attempts"] == 4  # at 0, 5, 15 and 35 s
    driver["loaded"] = True
    now[0] = 74.9
    assert reader.snapshot().devices == []  # the next attempt is due at 75 s
    now[0] = 75
    assert [d.uuid for d in reader.snapshot().devices] == ["GPU-a"]
    for _ in range(20):
        now[0] += 1000
        reader.snapshot()
    assert driver["attempts"] == 5  # a working session is kept, not re-initialised


def test_a_failed_read_ends_the_session_and_a_new_one_starts() -> None:
    double = NvmlDouble([FakeGpu(uuid="GPU-a")])
    now = [0.0]
    reader = GpuReader(double, clock=lambda: now[0])
    assert len(reader.snapshot().devices) == 1
    double.nvmlShutdown()  # the driver was reloaded under us: calls now fail
    assert reader.snapshot().devices == []
    now[0] = 6
    assert len(reader.snapshot().devices) == 1


def test_nvml_double_matches_pynvml() -> None:
    """Every function of the double takes what the real one takes."""
    double = NvmlDouble([])
    for name in dir(double):
        if name.startswith("nvml"):
            real = inspect.signature(getattr(pynvml, name)).parameters
            ours = inspect.signature(getattr(double, name)).parameters
            assert list(ours) == list(real), name


def test_reader_keeps_files_open_rereads_fresh_values_and_closes_gone_containers(
        tmp_path: Path) -> None:
    from services.metrics.cgroups import V2Reader

    a, b = tmp_path / "a", tmp_path / "b"
    write_container(a, Container("n", memory_current=100 * MIB, inactive_file=0))
    write_container(b, Container("n", memory_current=200 * MIB, inactive_file=0))
    reader = V2Reader(max_open=12)  # room for a's files only; b falls back to open/close
    first = reader.read(str(a))
    assert first is not None and first.memory_usage_bytes == 100 * MIB
    assert reader.read(str(b)).memory_usage_bytes == 200 * MIB  # type: ignore[union-attr]
    opened = len(os.listdir("/proc/self/fd"))
    (a / "memory.current").write_text(f"{150 * MIB}\n")  # the kernel updates in place
    assert reader.read(str(a)).memory_usage_bytes == 150 * MIB  # type: ignore[union-attr]
    assert len(os.listdir("/proc/self/fd")) == opened  # no new descriptors per scrape
    reader.forget_except({str(b)})  # a's container is gone from the node
    assert len(os.listdir("/proc/self/fd")) < opened
    reader.close()
