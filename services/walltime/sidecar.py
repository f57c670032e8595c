"""The per-server countdown, and the idle stop.

Walltime: one hub read at start, one stop at the deadline, nothing between. The deadline comes
from the hub's ``started`` time, so a restarted sidecar keeps the original deadline.

Idle (``WALLTIME_IDLE``): the hub's ``last_activity`` of the server, read again only when a
warning or the stop could be due (activity only ever moves the deadline later), then every
``WALLTIME_ACTIVITY_LAG`` through the warning window; before an idle stop it looks once more
after that lag, so activity still on its way to the hub is seen (services/walltime/idle.py).

At a deadline the stop is retried until the hub accepts it: a hub that is down at that moment
(upgrade, restart) must not let a server run past its limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from aiohttp import web

from services.hub.client import HubAuthError, HubClient, HubError, ServerModel
from services.runtime.durations import format_duration
from services.runtime.retry import Backoff
from services.walltime.countdown import Countdown, utcnow
from services.walltime.idle import IdleClock
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
        self.idle: IdleClock | None = None
        self.last_activity: datetime | None = None
        self.stop_reason: str | None = None  # walltime or idle, once it is decided
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
        watches: dict[asyncio.Task[None], str] = {}
        if self.settings.limit is not None:
            # A "10 minutes left" warning makes no sense for a 2-minute session.
            warnings = tuple(w for w in self.settings.warn if w < self.settings.limit)
            self.countdown = Countdown(server.started, self.settings.limit, warnings)
            watches[asyncio.create_task(self._wait_for_deadline(self.countdown, server))] = \
                "walltime"
        if self.settings.idle is not None:
            warnings = tuple(w for w in self.settings.idle_warn if w < self.settings.idle)
            self.idle = IdleClock(self.settings.idle, warnings)
            watches[asyncio.create_task(self._wait_for_idle(self.idle, server))] = "idle"
        try:
            done, _ = await asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)
        first = next(iter(done))
        first.result()  # a watch that failed raises here
        self.stop_reason = watches[first]
        return await self._stop()

    async def _wait_for_idle(self, clock: IdleClock, server: ServerModel) -> None:
        assert server.started is not None
        last = max(server.last_activity or server.started, server.started)
        self.last_activity = last
        log.info("idle watch started", extra={
            **self._who, "idle_limit": format_duration(clock.limit),
            "last_activity": last.isoformat()})
        announced: set[tuple[float, datetime]] = set()
        while True:
            now = utcnow()
            for threshold in clock.warnings_due(last, now):
                if (threshold, last) not in announced:
                    announced.add((threshold, last))
                    log.info("idle warning", extra={
                        **self._who, "threshold": format_duration(threshold),
                        "remaining_s": round(max(0.0, clock.remaining(last, now)), 1)})
            left = clock.remaining(last, now)
            if left <= 0:
                # Activity of the last moments may still be on its way to the hub.
                await asyncio.sleep(self.settings.activity_lag)
                fresh = await self._last_activity()
                if fresh is not None and fresh > last:
                    last = self.last_activity = fresh
                    log.info("activity again: the idle stop is off", extra=self._who)
                    continue
                log.info("idle limit reached", extra={
                    **self._who, "idle_s": round((utcnow() - last).total_seconds(), 1)})
                return
            quiet = clock.quiet_until(last)
            wait = (quiet - now).total_seconds() if now < quiet else \
                min(self.settings.activity_lag, left)
            await _sleep(max(wait, 0.0))
            fresh = await self._last_activity()
            if fresh is not None and fresh > last:
                last = self.last_activity = fresh

    async def _last_activity(self) -> datetime | None:
        """The hub's last_activity of this server now; None when the hub cannot say."""
        try:
            server = await self.hub.get_server(self.settings.user, self.settings.server_name,
                                               backoff=Backoff(attempts=3))
        except HubError as exc:
            log.warning("could not read the server's activity", extra={
                **self._who, "error": str(exc)})
            return None
        return server.last_activity if server is not None else None

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
        log.info(f"{self.stop_reason or 'walltime'} reached, stopping the server",
                 extra={**self._who, "reason": self.stop_reason})
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
        if self.countdown is None and self.last_activity is None:
            return 503, {**who, "state": "starting", "limit": self.settings.limit,
                         "message": "waiting for the hub to tell the server's start time"}
        now = utcnow()
        body: dict[str, object] = dict(who)
        if self.countdown is not None:
            body.update(self.countdown.status(now, stop_accepted=self.stop_accepted))
        else:
            body["state"] = "stopped" if self.stop_accepted else "running"
        if self.idle is not None and self.last_activity is not None:
            idle = self.idle.status(self.last_activity, now)
            body["idle"] = idle
            if body["state"] == "running" and idle["warnings_due"]:
                body["state"] = "warning"
            if idle["remaining"] <= 0 and body["state"] in ("running", "warning"):
                # The last look for late activity, then the stop: tell the user now, while
                # the server can still answer (only activity in these seconds undoes it).
                body["state"], body["stop_reason"] = "stopping", "idle"
        if self.stop_reason is not None:
            body["stop_reason"] = self.stop_reason
            if not self.stop_accepted:
                body["state"] = "stopping"
        return 200, body


async def _sleep(seconds: float) -> None:
    """Sleep in short steps, so a suspended VM or a clock step is noticed."""
    deadline = utcnow() + timedelta(seconds=seconds)
    while (left := (deadline - utcnow()).total_seconds()) > 0:  # noqa: ASYNC110 - a wall clock
        await asyncio.sleep(min(left, MAX_SLEEP))


def add_routes(app: web.Application, sidecar: WalltimeSidecar) -> None:
    async def status(_: web.Request) -> web.Response:
        code, body = sidecar.status()
        return web.json_response(body, status=code, headers={"Cache-Control": "no-store"})

    app.router.add_get("/status", status)

