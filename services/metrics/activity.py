"""What counts as the user doing something, added to jupyter_server's own activity.

jupyter_server counts API requests (an open, visible JupyterLab tab polls; a hidden one stops
polling), kernel messages and terminal I/O, and reports the latest to the hub through
jupyterhub-singleuser. It misses a kernel busy with a long, quiet cell and a terminal or
notebook left open but silent. Every ``INTERVAL`` seconds this marks the server active while a
kernel is busy, a kernel has a client connected (an open notebook or console) or a terminal
has one, through the hook jupyter_server documents for extensions: a ``*_last_activity``
setting, which ``last_activity()`` includes. The hub's ``last_activity`` (read by the walltime
sidecar's idle stop, and by jupyterhub-idle-culler where it runs) is then right.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

SETTING = "jupyterhub_sidecars_last_activity"
INTERVAL = 10.0  # seconds; well inside the shortest activity interval (30 s)


def reasons_active(settings: dict[str, Any]) -> list[str]:
    """Why the server is in use right now (empty: nothing holds it)."""
    reasons: list[str] = []
    kernels = settings.get("kernel_manager")
    if kernels is not None:
        for model in kernels.list_kernels():
            if model.get("execution_state") == "busy":
                reasons.append(f"kernel {model['id'][:8]} busy")
            elif model.get("connections"):
                reasons.append(f"kernel {model['id'][:8]} open in {model['connections']} "
                               "client(s)")
    terminals = settings.get("terminal_manager")
    for name, terminal in (getattr(terminals, "terminals", None) or {}).items():
        if getattr(terminal, "clients", None):
            reasons.append(f"terminal {name} open")
    return reasons


def mark_activity(settings: dict[str, Any], now: datetime | None = None) -> list[str]:
    """Record activity now if anything holds the server; returns the reasons."""
    reasons = reasons_active(settings)
    if reasons:
        settings[SETTING] = now or datetime.now(UTC)
    return reasons
