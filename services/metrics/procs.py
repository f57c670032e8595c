"""The process table from ``/proc``: who is whose child, resident memory, CPU time.

Used where cgroups cannot tell servers apart (the local mode, where every server shares the
machine's cgroup) and to find the processes of a container for GPU attribution.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from services.metrics.cgroups import read_text

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    name: str
    rss_bytes: int
    cpu_seconds: float


def read_process(pid: int, proc: str = "/proc") -> Process | None:
    """One process from ``stat`` and ``statm``; ``None`` when it has exited."""
    stat = read_text(f"{proc}/{pid}/stat")
    statm = read_text(f"{proc}/{pid}/statm")
    if not stat or not statm:
        return None
    # The name is in parentheses and may itself contain spaces or parentheses.
    open_paren, close_paren = stat.find("("), stat.rfind(")")
    fields = stat[close_paren + 2:].split()
    try:
        return Process(
            pid=pid,
            ppid=int(fields[1]),
            name=stat[open_paren + 1:close_paren],
            rss_bytes=int(statm.split()[1]) * PAGE_SIZE,
            cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        )
    except (IndexError, ValueError):
        return None


def all_pids(proc: str = "/proc") -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def process_table(proc: str = "/proc") -> dict[int, Process]:
    table = {}
    for pid in all_pids(proc):
        process = read_process(pid, proc)
        if process is not None:
            table[pid] = process
    return table


def descendants(table: dict[int, Process], root: int) -> list[Process]:
    """``root`` and everything below it (kernels, terminals, their children)."""
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.ppid, []).append(process.pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(table[pid])
            stack.extend(children.get(pid, ()))
    return found


def environ(pid: int, proc: str = "/proc") -> dict[str, str]:
    """A process's environment; empty when it is not ours to read or has exited."""
    try:
        with open(f"{proc}/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env

