"""Async client for the few JupyterHub REST calls the sidecars make.

Every call has a timeout; transient failures (connection errors, 429, 5xx) are retried with
backoff. A 401/403 is never retried: it means the token is wrong or lacks a scope, and the
error says which request was refused. Note JupyterHub answers **404** (not 403) when a token
may not even see a resource, so "not found" can also mean "not allowed to look".
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import CollectorRegistry, Counter

from services.contract import METRIC_PREFIX
from services.runtime.retry import Backoff

log = logging.getLogger(__name__)

RequestObserver = Callable[[str, str], None]
"""Called with (method, outcome) for every attempt: outcome is a status code or an error name."""


class HubError(Exception):
    """The hub could not do what was asked."""


class HubAuthError(HubError):
    """The hub refused our token (401) or its scopes (403). Retrying will not help."""


class HubUnavailable(HubError):
    """The hub did not answer usefully within the retry budget."""


class StopOutcome(enum.Enum):
    STOPPED = "stopped"  # 204: the server is stopped
    PENDING = "pending"  # 202: the hub accepted the stop and is still stopping it
    NOT_RUNNING = "not-running"  # 400: e.g. "Named servers are not enabled" / nothing to stop
    NOT_FOUND = "not-found"  # 404: no such user/server, or the token may not see it

    @property
    def accepted(self) -> bool:
        """The server is stopped or will be: nothing more to do."""
        return self in (StopOutcome.STOPPED, StopOutcome.PENDING, StopOutcome.NOT_FOUND)


@dataclass(frozen=True)
class ServerModel:
    """The fields of JupyterHub's server model that the sidecars use."""

    user: str
    name: str
    started: datetime | None
    pending: str | None
    ready: bool
    stopped: bool
    user_options: dict[str, Any] = field(default_factory=dict)
    # The last activity the hub knows of (the server's reports and proxy traffic).
    last_activity: datetime | None = None

    @classmethod
    def from_json(cls, user: str, data: dict[str, Any]) -> ServerModel:
        return cls(
            user=user,
            name=data.get("name") or "",
            started=_timestamp(data.get("started")),
            pending=data.get("pending"),
            ready=bool(data.get("ready")),
            stopped=bool(data.get("stopped")),
            user_options=data.get("user_options") or {},
            last_activity=_timestamp(data.get("last_activity")),
        )


def _timestamp(value: object) -> datetime | None:
    """The hub's ISO 8601 timestamps (``…Z``), always timezone-aware."""
    if not isinstance(value, str) or not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def server_path(user: str, server_name: str) -> str:
    """REST path of one server; the default server has its own singular route."""
    if server_name:
        return f"/users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}"
    return f"/users/{quote(user, safe='')}/server"


class HubClient:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
        observer: RequestObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._server_get = True  # False on JupyterHub 5.x: no GET of one server (405)
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self.backoff = backoff or Backoff()
        self._observer = observer

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        backoff: Backoff | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return a response whose status is in ``ok`` (or 404/400 if listed).

        Raises HubAuthError on 401/403, HubUnavailable when retries run out, HubError on any
        other unexpected status.
        """
        policy = backoff or self.backoff
        retry = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                outcome, detail, wait = type(exc).__name__, f"{type(exc).__name__}: {exc}", None
            else:
                outcome, detail = str(response.status_code), _hub_message(response)
                wait = _retry_after(response)
                if response.status_code in ok:
                    self._observe(method, outcome)
                    return response
                if response.status_code in (401, 403):
                    self._observe(method, outcome)
                    raise HubAuthError(
                        f"hub refused {method} {path} ({response.status_code}): {detail}; "
                        "check the token and its scopes"
                    )
                if response.status_code != 429 and response.status_code < 500:
                    self._observe(method, outcome)
                    raise HubError(f"hub answered {method} {path} with "
                                   f"{response.status_code}: {detail}")
            self._observe(method, outcome)
            retry += 1
            if not policy.allows(retry):
                raise HubUnavailable(f"{method} {path} failed after {retry} tries: {detail}")
            delay = wait if wait is not None else policy.delay(retry)
            log.warning("hub request failed, retrying",
                        extra={"method": method, "path": path, "error": detail,
                               "retry": retry, "delay_s": round(delay, 2)})
            await asyncio.sleep(delay)

    def _observe(self, method: str, outcome: str) -> None:
        if self._observer:
            self._observer(method, outcome)

    async def get_server(self, user: str, server_name: str = "",
                         *, backoff: Backoff | None = None) -> ServerModel | None:
        """One server's model, or None if it does not exist (or the token may not see it).

        JupyterHub 6 answers ``GET /users/<user>/servers/<name>``; 5.x (Zero to JupyterHub
        4.x's hub) has no GET there (405), so the server is read from the user's model,
        which the same ``read:servers!server=…`` scope shows with that one server in it."""
        if self._server_get:
            response = await self.request("GET", server_path(user, server_name),
                                          ok=(200, 404, 405), backoff=backoff)
            self._server_get = response.status_code != 405  # remembered: one probe only
        if not self._server_get:
            response = await self.request("GET", f"/users/{quote(user, safe='')}",
                                          ok=(200, 404), backoff=backoff)
            if response.status_code == 404:
                return None
            model = (response.json().get("servers") or {}).get(server_name)
            return ServerModel.from_json(user, model) if model is not None else None
        if response.status_code == 404:
            return None
        return ServerModel.from_json(user, response.json())

    async def stop_server(self, user: str, server_name: str = "",
                          *, backoff: Backoff | None = None) -> StopOutcome:
        response = await self.request("DELETE", server_path(user, server_name),
                                      ok=(202, 204, 400, 404), backoff=backoff)
        return {
            202: StopOutcome.PENDING,
            204: StopOutcome.STOPPED,
            400: StopOutcome.NOT_RUNNING,
            404: StopOutcome.NOT_FOUND,
        }[response.status_code]

    async def get_auth_state(self, user: str, *,
                             backoff: Backoff | None = None) -> dict[str, Any] | None:
        """The user's auth_state (needs ``admin:auth_state!user=<user>``); None if unset."""
        response = await self.request("GET", f"/users/{quote(user, safe='')}",
                                      backoff=backoff)
        state = response.json().get("auth_state")
        return dict(state) if isinstance(state, dict) else None

    async def set_auth_state(self, user: str, auth_state: dict[str, Any], *,
                             backoff: Backoff | None = None) -> None:
        """Replace the user's auth_state (needs ``admin:users!user=<user>``)."""
        await self.request("PATCH", f"/users/{quote(user, safe='')}",
                           json={"auth_state": auth_state}, backoff=backoff)

    async def active_servers(self, page_size: int = 200) -> AsyncIterator[ServerModel]:
        """Every running or pending server, one paginated ``GET /users?state=active`` walk."""
        offset = 0
        while True:
            response = await self.request(
                "GET", "/users",
                params={"state": "active", "offset": offset, "limit": page_size},
                headers={"Accept": "application/jupyterhub-pagination+json"},
            )
            body = response.json()
            items = body["items"] if isinstance(body, dict) else body
            for user in items:
                for server in (user.get("servers") or {}).values():
                    yield ServerModel.from_json(user["name"], server)
            following = body.get("_pagination", {}).get("next") if isinstance(body, dict) else None
            if not following:
                return
            offset = int(following["offset"])


def _hub_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.reason_phrase or str(response.status_code)


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code != 429:
        return None
    try:
        return min(60.0, max(0.0, float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return None


def hub_request_counter(registry: CollectorRegistry) -> RequestObserver:
    """Count every hub request attempt by method and outcome (status code or error)."""
    counter = Counter(f"{METRIC_PREFIX}_hub_requests", "Requests sent to the JupyterHub API.",
                      ["method", "outcome"], registry=registry)

    def observe(method: str, outcome: str) -> None:
        counter.labels(method, outcome).inc()

    return observe
