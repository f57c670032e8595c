"""Hub-wide walltime enforcement: one paginated list of active servers per interval.

It covers servers whose sidecar died or was never added. Each server's limit is the one the
hub hook recorded in its user_options when it started (so per-profile limits need no second
copy of the profile list here); servers without one get ``WALLTIME_LIMIT`` if that is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from services.contract import WALLTIME_USER_OPTION
from services.hub.client import HubAuthError, HubClient, HubError, ServerModel
from services.runtime.retry import Backoff
from services.walltime.countdown import Countdown, utcnow
from services.walltime.metrics import PREFIX
from services.walltime.settings import BackstopSettings

log = logging.getLogger(__name__)


class Backstop:
    def __init__(self, settings: BackstopSettings, hub: HubClient,
                 registry: CollectorRegistry) -> None:
        self.settings = settings
        self.hub = hub
        self.known: dict[tuple[str, str], Countdown] = {}
        self.sweeps = 0
        self._stops = Counter(f"{PREFIX}_walltime_backstop_stops",
                              "Servers the backstop stopped past their deadline.",
                              registry=registry)

    def countdowns(self) -> Iterable[tuple[str, str, Countdown]]:
        for (user, server), countdown in list(self.known.items()):
            yield user, server, countdown

    def limit_of(self, server: ServerModel) -> float | None:
        recorded = server.user_options.get(WALLTIME_USER_OPTION)
        if recorded is not None:
            try:
                value = float(recorded)
                if value > 0:
                    return value
            except (TypeError, ValueError):
                pass
            log.warning("ignoring a bad recorded walltime", extra={
                "user": server.user, "server": server.name, "value": repr(recorded)})
        return self.settings.limit

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
        overdue: list[ServerModel] = []
        async for server in self.hub.active_servers():
            limit = self.limit_of(server)
            if server.started is None or server.pending == "stop" or limit is None:
                continue
            countdown = Countdown(server.started, limit)
            seen[(server.user, server.name)] = countdown
            if countdown.remaining(now) <= -self.settings.grace:
                overdue.append(server)
        self.known = seen
        self.sweeps += 1
        for server in overdue:
            await self._stop(server, seen[(server.user, server.name)])

    async def _stop(self, server: ServerModel, countdown: Countdown) -> None:
        who = {"user": server.user, "server": server.name}
        overdue_s = round(-countdown.remaining(utcnow()), 1)
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
        log.info("backstop stopped an overdue server",
                 extra={**who, "overdue_s": overdue_s, "outcome": outcome.value})
