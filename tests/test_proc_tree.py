"""The benchmarks' per-process accounting (benchmarks/proc_tree.py): the CPU per request they
report is only as right as the process tree and the times read from /proc."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.proc_tree import cpu_seconds, cpu_used, descendants, tree_memory

SPIN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_a_grandchild_is_part_of_the_tree_and_its_cpu_is_counted() -> None:
    # A child that starts a grandchild, which spins 0.4 s of CPU, then sleeps to be seen.
    script = (f"import subprocess, sys\n"
              f"subprocess.run([sys.executable, '-c', {SPIN.format(seconds=0.4)!r} "
              f"+ 'time.sleep(30)'])\n")
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        tree: list[int] = []
        with cpu_used({"tree": [child.pid]}) as before_tree:
            for _ in range(200):
                tree = descendants(child.pid)
                if len(tree) == 2:
                    break
                time.sleep(0.02)
        assert tree[0] == child.pid and len(tree) == 2
        with cpu_used({"tree": tree}) as used:
            deadline = time.monotonic() + 30  # a busy machine gives the spin its 0.4 s late
            while cpu_seconds(tree) < 0.38 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert before_tree["tree"] < 0.3  # the child itself only waits
        assert 0.2 < used["tree"] < 1.0
        rss, pss = tree_memory(child.pid)
        assert rss > pss > 1 << 20  # two Python processes: MiBs, shared pages split in PSS
    finally:
        for pid in reversed(descendants(child.pid)):
            subprocess.run(["kill", str(pid)], check=False)
        child.wait(10)


def test_a_finished_child_counts_under_children() -> None:
    with cpu_used({}) as used:
        subprocess.run([sys.executable, "-c", SPIN.format(seconds=0.3)], check=True)
    assert 0.25 < used["children"] < 1.5
