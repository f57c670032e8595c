"""The idle limit: pure arithmetic on the last activity the hub knows of, easy to test.

Activity is what jupyter_server counts (API requests from an open, visible JupyterLab tab,
kernel messages, terminal I/O) plus what our server extension adds (kernels busy or connected,
terminals with a browser attached: services/metrics/activity.py); jupyterhub-singleuser
reports it to the hub every ``JUPYTERHUB_ACTIVITY_INTERVAL``, and the sidecar reads it from the
hub. So the sidecar needs no access to the notebook server, and the hub's ``last_activity``
(and jupyterhub-idle-culler, where it runs) sees busy kernels too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.walltime.countdown import iso


@dataclass(frozen=True)
class IdleClock:
    limit: float                     # seconds without activity before the server stops
    warnings: tuple[float, ...] = ()  # warn this long before the idle stop

    def deadline(self, last_activity: datetime) -> datetime:
        return last_activity + timedelta(seconds=self.limit)

    def remaining(self, last_activity: datetime, now: datetime) -> float:
        return (self.deadline(last_activity) - now).total_seconds()

    def warnings_due(self, last_activity: datetime, now: datetime) -> list[float]:
        left = self.remaining(last_activity, now)
        return [w for w in self.warnings if left <= w]

    def quiet_until(self, last_activity: datetime) -> datetime:
        """Nothing can be due before this: activity only moves the deadline later, so the
        hub need not be asked again until the first warning (or the stop) could come."""
        first = max((w for w in self.warnings if w < self.limit), default=0.0)
        return self.deadline(last_activity) - timedelta(seconds=first)

    def status(self, last_activity: datetime, now: datetime) -> dict[str, Any]:
        """The ``idle`` part of ``GET /status``."""
        left = self.remaining(last_activity, now)
        return {
            "limit": self.limit,
            "last_activity": iso(last_activity),
            "idle_for": round(max(0.0, (now - last_activity).total_seconds()), 3),
            "remaining": round(max(0.0, left), 3),
            "deadline": iso(self.deadline(last_activity)),
            "warnings": list(self.warnings),
            "warnings_due": self.warnings_due(last_activity, now),
        }
