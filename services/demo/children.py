"""The demo's child processes stop when the demo does, however it ends."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def stop_with_parent() -> None:
    """``preexec_fn`` of each child: SIGTERM (their graceful stop) when the demo dies, even by
    SIGKILL, so that no provider, gateway or hub outlives it."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
