"""Prometheus series shared by the sidecar and the backstop, built at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.contract import METRIC_PREFIX
from services.walltime.countdown import Countdown, utcnow

CountdownSource = Callable[[], Iterable[tuple[str, str, Countdown]]]




class WalltimeCollector(Collector):
    """limit / remaining / deadline per (user, server), from whatever the source knows now."""

    def __init__(self, source: CountdownSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["user", "server"]
        limit = GaugeMetricFamily(f"{METRIC_PREFIX}_walltime_limit_seconds",
                                  "Time limit of the server's session.", labels=labels)
        remaining = GaugeMetricFamily(f"{METRIC_PREFIX}_walltime_remaining_seconds",
                                      "Seconds left before the server is stopped.",
                                      labels=labels)
        deadline = GaugeMetricFamily(f"{METRIC_PREFIX}_walltime_deadline_timestamp_seconds",
                                     "When the server will be stopped (Unix time).",
                                     labels=labels)
        now = utcnow()
        for user, server, countdown in self._source():
            limit.add_metric([user, server], countdown.limit)
            remaining.add_metric([user, server], max(0.0, countdown.remaining(now)))
            deadline.add_metric([user, server], countdown.deadline.timestamp())
        yield from (limit, remaining, deadline)
