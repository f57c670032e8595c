"""The per-server countdown: one hub read at start, one stop at the deadline, nothing between.

The deadline comes from the hub's ``started`` time, so a restarted sidecar keeps the original
deadline. At the deadline the stop is retried until the hub accepts it: a hub that is down at
that moment (upgrade, restart) must not let a server run past its limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiohttp import web

from services.hub.client import HubAuthError, HubClient, HubError, ServerModel
from services.runtime.durations import format_duration
from services.runtime.retry import Backoff
from services.walltime.countdown import Countdown, utcnow
from services.walltime.settings import SidecarSettings

log = logging.getLogger(__name__)

# Until the stop is accepted, keep trying: at most a few seconds between tries.
PERSISTENT = Backoff(attempts=None, base=0.5, cap=3.0)
# Longest single sleep, so a suspended VM or a clock step is noticed within this time.
MAX_SLEEP = 30.0


class WalltimeSidecar:
    def __init__(self, settings: SidecarSettings, hub: HubClient) -> None:
        self.settings = settings
        self.hub = hub
        self.countdown: Countdown | None = None
        self.stop_accepted = False
        self.hub_requests = 0

    @property
    def _who(self) -> dict[str, str]:
        return {"user": self.settings.user, "server": self.settings.server_name}

    def countdowns(self) -> Iterable[tuple[str, str, Countdown]]:
        if self.countdown is not None and not self.stop_accepted:
            yield self.settings.user, self.settings.server_name, self.countdown

    async def run(self) -> int:
        try:
            server = await self.hub.get_server(self.settings.user, self.settings.server_name,
                                               backoff=PERSISTENT)
        except HubAuthError as exc:
            log.error("cannot read the server from the hub: %s", exc, extra=self._who)
            return 1
        if server is None:
            log.error("the hub has no such server, or the token may not read it "
                      "(needs read:servers!server=%s/%s)", self.settings.user,
                      self.settings.server_name, extra=self._who)
            return 1
        if server.started is None:
            log.info("server is not running; nothing to count down", extra=self._who)
            return 0
        # A "10 minutes left" warning makes no sense for a 2-minute session.
        warnings = tuple(w for w in self.settings.warn if w < self.settings.limit)
        self.countdown = Countdown(server.started, self.settings.limit, warnings)
        await self._wait_for_deadline(self.countdown, server)
        return await self._stop()

    async def _wait_for_deadline(self, countdown: Countdown, server: ServerModel) -> None:
        log.info("countdown started", extra={
            **self._who, "limit": format_duration(countdown.limit),
            "started": server.started.isoformat() if server.started else None,
            "deadline": countdown.deadline.isoformat(),
            "remaining_s": round(countdown.remaining(utcnow()), 1)})
        announced: set[float] = set()
        while True:
            now = utcnow()
            for threshold in countdown.warnings_due(now):
                if threshold not in announced:
                    announced.add(threshold)
                    log.info("walltime warning", extra={
                        **self._who, "threshold": format_duration(threshold),
                        "remaining_s": round(max(0.0, countdown.remaining(now)), 1)})
            if countdown.remaining(now) <= 0:
                return
            await asyncio.sleep(min(countdown.next_wakeup(now), MAX_SLEEP))

    async def _stop(self) -> int:
        log.info("walltime reached, stopping the server", extra=self._who)
        try:
            outcome = await self.hub.stop_server(self.settings.user, self.settings.server_name,
                                                 backoff=PERSISTENT)
        except asyncio.CancelledError:
            # The hub answers a DELETE only once the server is down, and taking the server
            # down stops this container: a SIGTERM here means the stop is under way.
            self.stop_accepted = True
            log.info("terminated while the hub stops the server", extra={
                **self._who, "hub_requests": self.hub_requests + 1})  # + the one in flight
            raise
        except HubAuthError as exc:
            log.error("the hub refused to stop the server: %s", exc, extra=self._who)
            return 1
        except HubError as exc:
            log.error("stopping the server failed: %s", exc, extra=self._who)
            return 1
        self.stop_accepted = True
        log.info("server stop accepted", extra={
            **self._who, "outcome": outcome.value, "hub_requests": self.hub_requests})
        return 0

    def status(self) -> tuple[int, dict[str, object]]:
        who: dict[str, object] = {"user": self.settings.user,
                                  "server": self.settings.server_name}
        if self.countdown is None:
            return 503, {**who, "state": "starting", "limit": self.settings.limit,
                         "message": "waiting for the hub to tell the server's start time"}
        return 200, {**who, **self.countdown.status(utcnow(), stop_accepted=self.stop_accepted)}


def add_routes(app: web.Application, sidecar: WalltimeSidecar) -> None:
    async def status(_: web.Request) -> web.Response:
        code, body = sidecar.status()
        return web.json_response(body, status=code, headers={"Cache-Control": "no-store"})

    app.router.add_get("/status", status)

