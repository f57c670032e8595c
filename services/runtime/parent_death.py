"""A child process told by the kernel when its parent dies, however the parent ends."""

from __future__ import annotations

import ctypes
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def signal_on_parent_death(number: int) -> None:
    """Have the kernel send signal ``number`` to this process when its parent (the thread that
    forked it) dies, even by SIGKILL; 0 turns it off. Linux only: elsewhere nothing happens."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, number, 0, 0, 0)
