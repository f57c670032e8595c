"""What a server costs, read from /proc for the whole process tree it runs as (nginx's and
Apache's workers, the file server's forked workers, the gateway's fork server and the file
servers it started)."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, as they are now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (gone ones count as 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def tree_memory(pid: int) -> tuple[int, int]:
    """Resident memory of a process and all its descendants (bytes): RSS, which counts a page
    shared by forked workers once per worker, and PSS, which splits it between them (the
    honest sum for nginx's, Apache's and the file server's several processes alike)."""
    rss = pss = 0
    for current in descendants(pid):
        with contextlib.suppress(OSError):
            one_rss, one_pss = process_memory(current)
            rss, pss = rss + one_rss, pss + one_pss
    return rss, pss


def process_memory(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process (bytes), from smaps_rollup."""
    values = {"Rss": 0, "Pss": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0]) * 1024
    return values["Rss"], values["Pss"]


@contextlib.contextmanager
def cpu_used(groups: dict[str, list[int]]) -> Iterator[dict[str, float]]:
    """CPU seconds each group of processes used during the block, and under "children" what
    this process's children that ended in it used (a load generator run to completion)."""
    used: dict[str, float] = {}
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    start = resource.getrusage(resource.RUSAGE_CHILDREN)
    yield used
    end = resource.getrusage(resource.RUSAGE_CHILDREN)
    used.update({name: cpu_seconds(pids) - before[name] for name, pids in groups.items()})
    used["children"] = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
