"""Jupyter server extension: ``GET /api/sidecars/status`` for the JupyterLab status bar, and
the activity that jupyter_server alone does not see (services/metrics/activity.py).

Authenticated like every Jupyter server API (the hub's OAuth cookie or a token). One reading is
shared by all tabs for ``CACHE_SECONDS``, so many open tabs polling every 5 s cost one read.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback

from services.metrics import activity
from services.metrics.status import StatusReader

CACHE_SECONDS = 1.0
ROUTE = "api/sidecars/status"


class StatusHandler(APIHandler):
    # The status bar polls this even from a hidden tab: that is not the user doing anything
    # (jupyter_server would count it as activity and no idle limit would ever be reached).
    _track_activity = False

    @web.authenticated
    async def get(self) -> None:
        cache: _Cache = self.settings["jupyterhub_sidecars_status"]
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(await cache.get()))


class _Cache:
    """A plain module extension gets no stop hook from jupyter_server, so it keeps nothing
    open between readings: each walltime reading (at most one per ``CACHE_SECONDS``) opens and
    closes its own HTTP client."""

    def __init__(self, reader: StatusReader, settings: dict[str, Any]) -> None:
        self.reader = reader
        self.settings = settings
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at > CACHE_SECONDS:
                usage = await asyncio.to_thread(self.reader.read_usage)
                usage["walltime"], usage["tokens"] = await asyncio.gather(
                    self.reader.read_walltime(), self.reader.read_tokens())
                usage["activity"] = {"holding": activity.reasons_active(self.settings)}
                self._value, self._at = usage, time.monotonic()
            return self._value


def _keep_activity(serverapp: Any) -> None:
    """Every ``activity.INTERVAL`` seconds, for as long as the server runs: busy kernels and
    open terminals count as activity (services/metrics/activity.py)."""
    settings = serverapp.web_app.settings

    def check() -> None:
        try:
            activity.mark_activity(settings)
        except Exception:  # never let a check take the server down
            serverapp.log.exception("jupyterhub-sidecars: activity check failed")

    PeriodicCallback(check, activity.INTERVAL * 1000).start()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "services.metrics.server_extension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    web_app.settings["jupyterhub_sidecars_status"] = _Cache(StatusReader.from_environment(),
                                                            web_app.settings)
    route = url_path_join(web_app.settings["base_url"], ROUTE)
    web_app.add_handlers(".*$", [(route, StatusHandler)])
    _keep_activity(serverapp)
    serverapp.log.info("jupyterhub-sidecars: serving /%s; busy kernels and open terminals "
                       "count as activity", ROUTE)
