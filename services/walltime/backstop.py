"""Hub-wide walltime and idle enforcement: one paginated list of active servers per interval.

It covers servers whose sidecar died or was never added. Each server's limits are the ones the
hub hook recorded in its user_options when it started (so per-profile limits need no second
copy of the profile list here); servers without a walltime get ``WALLTIME_LIMIT`` if that is
set. An idle limit is checked against the hub's ``last_activity`` (from the same list).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter

from services.contract import IDLE_USER_OPTION, METRIC_PREFIX, WALLTIME_USER_OPTION
from services.hub.client import HubAuthError, HubClient, HubError, ServerModel
from services.runtime.retry import Backoff
from services.walltime.countdown import Countdown, utcnow
from services.walltime.settings import BackstopSettings

log = logging.getLogger(__name__)


class Backstop:
    def __init__(self, settings: BackstopSettings, hub: HubClient,
                 registry: CollectorRegistry) -> None:
        self.settings = settings
        self.hub = hub
        self.known: dict[tuple[str, str], Countdown] = {}
        self._stops = Counter(f"{METRIC_PREFIX}_walltime_backstop_stops",
                              "Servers the backstop stopped past their deadline.",
                              registry=registry)

    def countdowns(self) -> Iterable[tuple[str, str, Countdown]]:
        for (user, server), countdown in list(self.known.items()):
            yield user, server, countdown

    def limit_of(self, server: ServerModel) -> float | None:
        return _recorded(server, WALLTIME_USER_OPTION) or self.settings.limit

    def idle_overdue(self, server: ServerModel, now: datetime) -> bool:
        """Idle past its recorded idle limit (and the grace) by the hub's last_activity."""
        idle = _recorded(server, IDLE_USER_OPTION)
        if idle is None or server.started is None:
            return False
        last = max(server.last_activity or server.started, server.started)
        return (now - last).total_seconds() >= idle + self.settings.grace

    async def run(self) -> int:
        while True:
            try:
                await self.sweep()
            except HubAuthError as exc:
                log.error("the hub refused the backstop's token: %s", exc)
                return 1
            except HubError as exc:
                log.warning("sweep failed, will try again", extra={"error": str(exc)})
            await asyncio.sleep(self.settings.interval)

    async def sweep(self) -> None:
        now = utcnow()
        seen: dict[tuple[str, str], Countdown] = {}
        overdue: list[tuple[ServerModel, str]] = []
        async for server in self.hub.active_servers():
            if server.started is None or server.pending == "stop":
                continue
            limit = self.limit_of(server)
            if limit is not None:
                countdown = Countdown(server.started, limit)
                seen[(server.user, server.name)] = countdown
                if countdown.remaining(now) <= -self.settings.grace:
                    overdue.append((server, "walltime"))
                    continue
            if self.idle_overdue(server, now):
                overdue.append((server, "idle"))
        self.known = seen
        for server, reason in overdue:
            await self._stop(server, reason)

    async def _stop(self, server: ServerModel, reason: str) -> None:
        who = {"user": server.user, "server": server.name, "reason": reason}
        try:
            outcome = await self.hub.stop_server(server.user, server.name,
                                                 backoff=Backoff(attempts=3))
        except HubAuthError:
            raise
        except HubError as exc:
            log.warning("backstop could not stop an overdue server",
                        extra={**who, "error": str(exc)})
            return
        self._stops.inc()
        self.known.pop((server.user, server.name), None)
        log.info("backstop stopped an overdue server", extra={**who, "outcome": outcome.value})


def _recorded(server: ServerModel, option: str) -> float | None:
    """A limit the hub hook recorded in the server's user_options (seconds), if valid."""
    recorded = server.user_options.get(option)
    if recorded is None:
        return None
    try:
        value = float(recorded)
    except (TypeError, ValueError):
        value = 0.0
    if value > 0:
        return value
    log.warning("ignoring a bad recorded limit", extra={
        "user": server.user, "server": server.name, "option": option, "value": repr(recorded)})
    return None
