"""Exponential backoff with jitter, so many sidecars retrying a restarted hub do not stampede."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays ``base·2ⁿ`` capped at ``cap``, each drawn from its upper half ("equal jitter").

    ``attempts`` is the total number of tries; ``None`` retries forever (used where giving up
    would lose something, e.g. stopping a server at its deadline).
    """

    attempts: int | None = 4
    base: float = 0.5
    cap: float = 5.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.cap, self.base * 2 ** (retry - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311 - jitter

    def allows(self, retry: int) -> bool:
        return self.attempts is None or retry < self.attempts
