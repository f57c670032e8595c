"""The demo's child processes stop when the demo does, however it ends."""

from __future__ import annotations

import signal

from services.runtime.parent_death import signal_on_parent_death


def stop_with_parent() -> None:
    """``preexec_fn`` of each child: SIGTERM (their graceful stop) when the demo dies, even by
    SIGKILL, so that no provider, gateway or hub outlives it."""
    signal_on_parent_death(signal.SIGTERM)
