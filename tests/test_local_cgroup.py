"""Where the local spawner puts a server's cgroup and what it writes, on both cgroup versions
(services/hub/local_cgroup.py). The real v1 hierarchy of this machine is exercised by
tests/test_lxcfs.py; v2 (no such machine here) against a tree of its file names."""

from __future__ import annotations

import os
from pathlib import Path

from services.hub import local_cgroup


def test_v2_goes_next_to_the_hubs_cgroup_with_both_controllers(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "system.slice" / "jupyterhub.service").mkdir(parents=True)
    own = tmp_path / "self-cgroup"
    own.write_text("0::/system.slice/jupyterhub.service\n")
    group = local_cgroup.create("alice-gpu", 3 * 2**30, 1.5, root=str(root),
                                proc_self_cgroup=str(own))
    folder = root / "system.slice" / "jupyterhub-sidecars" / "alice-gpu"
    assert group.version == 2 and group.folders == (str(folder),)
    assert (folder / "memory.max").read_text() == str(3 * 2**30)
    assert (folder / "cpu.max").read_text() == "150000 100000"
    # a cgroup with processes cannot give controllers to children: the group is a sibling
    assert (folder.parent / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert group.procs_files() == [str(folder / "cgroup.procs")]


def test_v1_goes_below_the_hubs_memory_and_cpu_cgroups(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    for hierarchy in ("memory", "cpu,cpuacct"):
        (root / hierarchy / "hub").mkdir(parents=True)
    os.symlink("cpu,cpuacct", root / "cpu")
    own = tmp_path / "self-cgroup"
    own.write_text("4:memory:/hub\n2:cpu,cpuacct:/hub\n0::/\n")
    group = local_cgroup.create("bob/odd name", 2**30, None, root=str(root),
                                proc_self_cgroup=str(own))
    memory = root / "memory" / "hub" / "jupyterhub-sidecars" / "bob_odd_name"
    assert group.version == 1 and group.folders[0] == str(memory)
    assert (memory / "memory.limit_in_bytes").read_text() == str(2**30)
    assert not (Path(group.folders[1]) / "cpu.cfs_quota_us").exists()  # no CPU limit asked


def test_remove_takes_the_folders_once_empty(tmp_path: Path) -> None:
    parent = tmp_path / "jupyterhub-sidecars"
    folder = parent / "carol-default"
    folder.mkdir(parents=True)
    group = local_cgroup.ServerCgroup(2, (str(folder),))
    assert group.pids() == set()  # no cgroup.procs file: nothing inside
    assert group.remove(grace=0.1, timeout=1)
    assert not folder.exists() and not parent.exists()
