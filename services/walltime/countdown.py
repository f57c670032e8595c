"""The countdown itself: pure arithmetic on the hub's start time, easy to test."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Recorded by the hub hook in the server's user_options, so the backstop knows each limit.


class State(enum.StrEnum):
    RUNNING = "running"
    WARNING = "warning"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Countdown:
    started: datetime
    limit: float
    warnings: tuple[float, ...] = ()

    @property
    def deadline(self) -> datetime:
        return self.started + timedelta(seconds=self.limit)

    def remaining(self, now: datetime) -> float:
        return (self.deadline - now).total_seconds()

    def warnings_due(self, now: datetime) -> list[float]:
        """Thresholds already reached, longest first (``[600, 60]`` one minute before the end)."""
        left = self.remaining(now)
        return [w for w in self.warnings if left <= w]

    def next_wakeup(self, now: datetime) -> float:
        """Seconds until the next warning threshold or the deadline, whichever comes first."""
        left = self.remaining(now)
        upcoming = [left - w for w in self.warnings if left > w] + [left]
        return max(0.0, min(upcoming))

    def state(self, now: datetime, stop_accepted: bool = False) -> State:
        if stop_accepted:
            return State.STOPPED
        if self.remaining(now) <= 0:
            return State.STOPPING
        return State.WARNING if self.warnings_due(now) else State.RUNNING

    def status(self, now: datetime, *, stop_accepted: bool = False) -> dict[str, Any]:
        """What ``GET /status`` returns; times in seconds, timestamps in ISO 8601 UTC."""
        return {
            "limit": self.limit,
            "started": iso(self.started),
            "deadline": iso(self.deadline),
            "elapsed": round(max(0.0, (now - self.started).total_seconds()), 3),
            "remaining": round(max(0.0, self.remaining(now)), 3),
            "state": self.state(now, stop_accepted).value,
            "warnings": list(self.warnings),
            "warnings_due": self.warnings_due(now),
        }


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
