"""Retry and error semantics of the hub client, at the HTTP transport level.

The JupyterHub API semantics (status codes, scopes) are tested against the real hub in
test_walltime_hub.py; here the transport injects the failures a real hub rarely shows on cue.
"""

from __future__ import annotations

import json

import httpx
import pytest

from services.hub.client import (
    HubAuthError,
    HubClient,
    HubError,
    HubUnavailable,
    StopOutcome,
    server_path,
)
from services.runtime.retry import Backoff

FAST = Backoff(attempts=4, base=0.001, cap=0.002)
SERVER = {"name": "", "started": "2026-01-01T12:00:00.000000Z", "pending": None,
          "ready": True, "stopped": False, "user_options": {"walltime_seconds": 60}}


def client(handler, **kwargs) -> tuple[HubClient, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    hub = HubClient("http://hub/hub/api", "secret", backoff=FAST,
                    transport=httpx.MockTransport(handler),
                    observer=lambda m, o: seen.append((m, o)), **kwargs)
    return hub, seen


async def test_reads_a_server_model_with_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "token secret"
        assert request.url.raw_path == b"/hub/api/users/al%20ice/servers/my%2Fgpu"
        return httpx.Response(200, json=SERVER)

    hub, _ = client(handler)
    model = await hub.get_server("al ice", "my/gpu")
    assert model is not None
    assert model.started is not None and model.started.isoformat() == "2026-01-01T12:00:00+00:00"
    assert model.user_options["walltime_seconds"] == 60


async def test_retries_5xx_and_connection_errors_then_succeeds() -> None:
    answers = iter([httpx.ConnectError("refused"), httpx.Response(502),
                    httpx.Response(200, json=SERVER)])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    hub, seen = client(handler)
    assert await hub.get_server("alice") is not None
    assert seen == [("GET", "ConnectError"), ("GET", "502"), ("GET", "200")]


async def test_gives_up_after_the_attempts_with_a_clear_error() -> None:
    hub, seen = client(lambda r: httpx.Response(503, json={"message": "upgrading"}))
    with pytest.raises(HubUnavailable, match="GET /users/alice/server failed after 4 tries: "
                                             "upgrading"):
        await hub.get_server("alice")
    assert len(seen) == 4


async def test_auth_errors_are_not_retried() -> None:
    hub, seen = client(lambda r: httpx.Response(403, json={"message": "Action is not "
                                                                       "authorized"}))
    with pytest.raises(HubAuthError, match=r"refused DELETE .* \(403\).*check the token"):
        await hub.stop_server("alice")
    assert seen == [("DELETE", "403")]


async def test_429_waits_as_told() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}),
                    httpx.Response(204)])
    hub, seen = client(lambda r: next(answers))
    assert await hub.stop_server("alice") is StopOutcome.STOPPED
    assert seen == [("DELETE", "429"), ("DELETE", "204")]


@pytest.mark.parametrize(("status", "outcome"), [(202, StopOutcome.PENDING),
                                                 (204, StopOutcome.STOPPED),
                                                 (400, StopOutcome.NOT_RUNNING),
                                                 (404, StopOutcome.NOT_FOUND)])
async def test_stop_outcomes(status: int, outcome: StopOutcome) -> None:
    hub, _ = client(lambda r: httpx.Response(status))
    assert await hub.stop_server("alice", "gpu") is outcome


async def test_unexpected_status_is_an_error_not_a_retry() -> None:
    hub, seen = client(lambda r: httpx.Response(409, json={"message": "conflict"}))
    with pytest.raises(HubError, match="409: conflict"):
        await hub.get_server("alice")
    assert len(seen) == 1


async def test_active_servers_follow_pagination() -> None:
    pages = {
        "0": {"items": [{"name": "a", "servers": {"": SERVER}},
                        {"name": "b", "servers": {"x": {**SERVER, "name": "x"}}}],
              "_pagination": {"offset": 0, "limit": 2, "total": 3,
                              "next": {"offset": 2, "limit": 2, "url": "..."}}},
        "2": {"items": [{"name": "c", "servers": {}}],
              "_pagination": {"offset": 2, "limit": 2, "total": 3, "next": None}},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["state"] == "active"
        assert request.headers["Accept"] == "application/jupyterhub-pagination+json"
        return httpx.Response(200, content=json.dumps(pages[request.url.params["offset"]]))

    hub, seen = client(handler)
    servers = [(s.user, s.name) async for s in hub.active_servers(page_size=2)]
    assert servers == [("a", ""), ("b", "x")]
    assert len(seen) == 2


def test_server_paths() -> None:
    assert server_path("alice", "") == "/users/alice/server"
    assert server_path("alice", "gpu") == "/users/alice/servers/gpu"
    assert server_path("../admin", "a/b") == "/users/..%2Fadmin/servers/a%2Fb"


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = Backoff(attempts=None, base=1, cap=4)
    for retry, ceiling in [(1, 1), (2, 2), (3, 4), (10, 4)]:
        delays = {policy.delay(retry) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1
    assert policy.allows(10**6)
    assert not Backoff(attempts=2).allows(2)
