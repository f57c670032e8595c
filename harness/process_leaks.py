"""No process outlives the test run: a session-level check that fails the run otherwise.

pytest becomes a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so a process the tests
started that loses its parent (a file server whose gateway was killed, a sidecar whose hub
went away, anything daemonised) is re-parented to pytest instead of init, and stays findable
as one of pytest's descendants. When the session ends, every descendant still alive is a leak:
it is named with the test during which it started (its start time in /proc against each
test's time window), killed, and the run fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 5.0  # processes still shutting down when the last fixture returned


@dataclass
class Tracker:
    me: int = field(default_factory=os.getpid)
    windows: list[tuple[float, str]] = field(default_factory=list)  # (start, test) in order

    def start(self) -> bool:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)

    def test_starts(self, test: str) -> None:
        self.windows.append((time.clock_gettime(time.CLOCK_BOOTTIME), test))

    def started_during(self, pid: int) -> str:
        """The test that was running when ``pid`` started."""
        started = _start_time(pid)
        tick = 1 / os.sysconf("SC_CLK_TCK")  # /proc counts start times in whole ticks
        test = "(before the first test)"
        for begin, name in self.windows:
            if started is None or begin > started + tick:
                break
            test = name
        return test

    def leaks(self) -> list[str]:
        """Descendants still alive after a grace period, described; they are then killed."""
        deadline = time.monotonic() + GRACE_SECONDS
        alive = live_descendants(self.me)
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = live_descendants(self.me)
        described = []
        for pid in alive:
            described.append(f"pid {pid} (uid {_uid(pid)}) from {self.started_during(pid)}: "
                             f"{_cmdline(pid)[:200]}")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        reap_zombies()
        return described


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (by parent links in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def live_descendants(root: int) -> list[int]:
    return [pid for pid in descendants(root) if (_stat(pid) or ("Z", 0))[0] != "Z"]


def reap_zombies() -> None:
    """Collect exited children (orphans re-parented to us that nobody else waits for)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since boot (CLOCK_BOOTTIME's scale)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: starttime


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return "?"


def _uid(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return line.split()[1]
    except OSError:
        pass
    return "?"
