"""The idle stop on a real hub: a server nobody uses stops after its profile's idle limit (40 s
here), with warnings; one with a kernel busy in a long quiet cell, or a terminal open in a
client, keeps running past it. Activity reaches the hub through jupyterhub-singleuser
(every 5 s here) with what our server extension adds; the walltime sidecar reads it there."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest

from harness.hub import Hub, process_env, sidecar_get, sidecar_url
from services.metrics.activity import mark_activity, reasons_active
from services.walltime.idle import IdleClock

pytestmark = pytest.mark.slow
LIMIT = 40.0
TOLERANCE = 20.0  # activity reports every 5 s, the sidecar's last look 5 s later, the stop


def test_the_idle_clock() -> None:
    clock = IdleClock(7200, (600, 60))
    last = datetime.fromisoformat("2026-11-30T10:00:00+00:00")
    at = datetime.fromisoformat
    assert clock.quiet_until(last) == at("2026-11-30T11:50:00+00:00")  # no look before
    assert clock.warnings_due(last, at("2026-11-30T11:51:00+00:00")) == [600]
    status = clock.status(last, at("2026-11-30T11:59:30+00:00"))
    assert status["remaining"] == 30 and status["warnings_due"] == [600, 60]
    assert status["idle_for"] == 7170 and status["deadline"] == "2026-11-30T12:00:00Z"


def test_what_holds_a_server() -> None:
    class Kernels:
        def list_kernels(self) -> list[dict[str, Any]]:
            return [{"id": "aaaaaaaa-1", "execution_state": "idle", "connections": 0},
                    {"id": "bbbbbbbb-2", "execution_state": "busy", "connections": 0},
                    {"id": "cccccccc-3", "execution_state": "idle", "connections": 2}]

    class Terminal:
        def __init__(self, clients: list[object]) -> None:
            self.clients = clients

    terminals = type("Terminals", (), {})()
    terminals.terminals = {"1": Terminal([]), "2": Terminal([object()])}
    settings: dict[str, Any] = {"kernel_manager": Kernels(), "terminal_manager": terminals}
    assert reasons_active(settings) == ["kernel bbbbbbbb busy",
                                        "kernel cccccccc open in 2 client(s)", "terminal 2 open"]
    assert mark_activity(settings) and "jupyterhub_sidecars_last_activity" in settings
    quiet: dict[str, Any] = {"kernel_manager": type("K", (), {"list_kernels": lambda s: []})()}
    assert mark_activity(quiet) == [] and "jupyterhub_sidecars_last_activity" not in quiet


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    instance = Hub(tmp_path_factory.mktemp("idle-hub"))
    instance.start()
    yield instance
    for user in instance.api("GET", "/users").json():
        instance.api("DELETE", f"/users/{user['name']}/server")
    instance.stop()


def _token(hub: Hub, user: str) -> str:
    response = hub.api("POST", f"/users/{user}/tokens", json={"note": "idle test"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def _run_a_quiet_cell(hub: Hub, user: str, token: str, seconds: int) -> str:
    """A kernel busy for ``seconds`` without a sound, and no client left connected."""
    base = f"{hub.public_url}/user/{user}"
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{base}/api/kernels", json={"name": "python3"}) as response:
            assert response.status == 201, await response.text()
            kernel = (await response.json())["id"]
        ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels"
        async with session.ws_connect(ws_url) as ws:
            msg_id = uuid.uuid4().hex
            await ws.send_str(json.dumps({
                "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": f"import time; time.sleep({seconds})", "silent": False,
                            "store_history": False, "user_expressions": {},
                            "allow_stdin": False}}))
            async with asyncio.timeout(30):
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("parent_header", {}).get("msg_id") == msg_id and \
                            data.get("content", {}).get("execution_state") == "busy":
                        break
    return str(kernel)


async def _hold_a_terminal(hub: Hub, user: str, token: str, seconds: float) -> None:
    """A terminal open in a client (as a browser tab holds it), nobody typing."""
    base = f"{hub.public_url}/user/{user}"
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{base}/api/terminals") as response:
            assert response.status == 200, await response.text()
            name = (await response.json())["name"]
        ws_url = base.replace("http", "ws", 1) + f"/terminals/websocket/{name}"
        async with session.ws_connect(ws_url) as ws:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.receive(), timeout=1)


def test_idle_servers_stop_busy_kernels_and_open_terminals_keep_theirs(hub: Hub) -> None:
    for user in ("idle-kernel", "idle-terminal", "idle-quiet"):
        hub.start_server(user, profile="idle")
    started = time.monotonic()
    tokens = {user: _token(hub, user) for user in ("idle-kernel", "idle-terminal")}
    kernel = asyncio.run(_run_a_quiet_cell(hub, "idle-kernel", tokens["idle-kernel"], 300))

    async def watch() -> dict[str, Any]:
        terminal = asyncio.create_task(
            _hold_a_terminal(hub, "idle-terminal", tokens["idle-terminal"], LIMIT + 35))
        seen: dict[str, Any] = {"warned": None, "stopped_after": None, "last": None}
        url = _walltime_url(hub.sidecar_pid("idle-quiet"))
        while time.monotonic() - started < LIMIT + 35:
            if seen["stopped_after"] is None:
                try:
                    status = sidecar_get(url, "/status", timeout=2).json()
                    if status.get("idle", {}).get("warnings_due") and seen["warned"] is None:
                        seen["warned"] = status
                    seen["last"] = status.get("idle", {}).get("last_activity") or seen["last"]
                except httpx.HTTPError:
                    pass
                if hub.server_model("idle-quiet") is None:
                    # From the last activity the sidecar knew of to the stop.
                    last = datetime.fromisoformat(seen["last"].replace("Z", "+00:00"))
                    seen["stopped_after"] = (datetime.now(UTC) - last).total_seconds()
            await asyncio.sleep(1)
        await terminal
        return seen

    seen = asyncio.run(watch())
    assert seen["stopped_after"] is not None, "the idle server was not stopped"
    assert LIMIT - 5 <= seen["stopped_after"] <= LIMIT + TOLERANCE, seen["stopped_after"]
    warned = seen["warned"]
    assert warned is not None and warned["state"] == "warning"
    assert warned["idle"]["limit"] == LIMIT and warned["idle"]["remaining"] <= 25
    stopped = list(hub.log_records(message="idle limit reached", user="idle-quiet"))
    assert stopped, "the sidecar did not log the idle stop"
    # The busy kernel and the open terminal held their servers past the limit.
    for user in ("idle-kernel", "idle-terminal"):
        model = hub.server_model(user)
        assert model is not None and model["ready"], user
    print(f"idle stop after {seen['stopped_after']:.1f} s (limit {LIMIT:g} s); "
          f"busy kernel {kernel[:8]} and open terminal kept their servers")


def _walltime_url(pid: int) -> str:
    return sidecar_url(process_env(pid), "WALLTIME_")
