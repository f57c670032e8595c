"""walltime end to end against a real JupyterHub: limits, restarts, least privilege."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from jupyterhub import __version__ as hub_version

from harness.hub import (
    Hub,
    process_env,
    python,
    secret_file,
    sidecar_get,
    sidecar_url,
    wait_sidecar,
)
from services.hub.hooks import token_note, walltime_scopes

pytestmark = pytest.mark.slow


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


HUB_MAJOR = int(hub_version.split(".")[0])


def started_at(model: dict) -> float:
    return datetime.fromisoformat(model["started"].replace("Z", "+00:00")).timestamp()


def sidecar_status(hub: Hub, user: str, name: str = "") -> dict:
    env = process_env(hub.sidecar_pid(user, name))
    return sidecar_get(sidecar_url(env, "WALLTIME_"), "/status").json()


@pytest.mark.parametrize("server_name", ["", "analysis"], ids=["default", "named"])
def test_server_is_stopped_at_its_limit(hub: Hub, server_name: str) -> None:
    user = f"limit-{server_name or 'default'}"
    model = hub.start_server(user, server_name, profile="fifteen")
    status = sidecar_status(hub, user, server_name)
    assert status["limit"] == 15
    assert status["state"] in ("running", "warning")
    assert status["user"] == user and status["server"] == server_name

    stopping = hub.wait_stop_began(user, server_name, timeout=40)
    stopped = hub.wait_stopped(user, server_name, timeout=20)

    # The sidecar asks at the deadline; the hub then takes a second or two to stop the
    # notebook process (jupyter_server shutdown), more on a loaded 2-core CI machine.
    assert 15 <= stopping - started_at(model) <= 17, f"stop began {stopping - started_at(model)}"
    assert stopped - started_at(model) <= 20
    [asked] = hub.log_records(message="walltime reached, stopping the server", user=user)
    asked_at = datetime.fromisoformat(asked["time"]).timestamp() - started_at(model)
    assert 15 <= asked_at <= 15.5, asked_at
    # The sidecar logs the stop as accepted, or, when the hub's stop reaches it first, that
    # it was terminated while the hub stopped the server.
    records = [r for r in hub.log_records(user=user, service="walltime") if r["message"] in (
        "server stop accepted", "terminated while the hub stops the server")]
    assert len(records) == 1
    # One read at start, one stop at the end; JupyterHub 5 first answers the read of one
    # server with 405 and the sidecar reads the user's model instead (once).
    assert records[0]["hub_requests"] == 2 + (1 if HUB_MAJOR < 6 else 0)
    note = token_note("walltime", user, server_name)
    tokens = hub.api("GET", f"/users/{user}/tokens").json()["api_tokens"]
    assert [t for t in tokens if t["note"] == note] == []


def test_restarted_sidecar_keeps_the_original_deadline(hub: Hub) -> None:
    user = "restart"
    model = hub.start_server(user, profile="twenty")
    before = sidecar_status(hub, user)
    pid = hub.sidecar_pid(user)
    env = process_env(pid)
    time.sleep(max(0.0, started_at(model) + 8 - time.time()))  # half-way

    os.kill(pid, signal.SIGKILL)
    replacement = subprocess.Popen([python(), "-m", "services", "walltime"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        after = wait_sidecar(sidecar_url(env, "WALLTIME_"), "/status", timeout=10).json()
        assert after["deadline"] == before["deadline"]
        assert after["started"] == model["started"]
        assert after["remaining"] < 13

        stopping = hub.wait_stop_began(user, timeout=40)
        assert 20 <= stopping - started_at(model) <= 22
        hub.wait_stopped(user, timeout=20)
        assert replacement.wait(10) == 0
    finally:
        if replacement.poll() is None:
            replacement.kill()


def test_walltime_token_is_least_privilege_and_revoked_at_stop(hub: Hub) -> None:
    user, other = "lp-alice", "lp-bob"
    model = hub.start_server(user, profile="long")
    hub.start_server(other, profile="long")
    token = secret_file(process_env(hub.sidecar_pid(user)), "WALLTIME_API_TOKEN_FILE")

    # What the hub stored: exactly two scopes on one server, expiring after limit + margin.
    stored = [t for t in hub.api("GET", f"/users/{user}/tokens").json()["api_tokens"]
              if t["note"] == token_note("walltime", user, "")]
    assert len(stored) == 1
    # JupyterHub adds the owner's own name and groups to every token; nothing else is there.
    identity = {f"read:users:name!user={user}", f"read:users:groups!user={user}"}
    assert set(stored[0]["scopes"]) == set(walltime_scopes(user, "")) | identity
    expires = datetime.fromisoformat(stored[0]["expires_at"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (started_at(model) + 12 * 3600 + 60)) < 30

    def call(method: str, path: str, **kwargs) -> int:
        return hub.api(method, path, token=token, **kwargs).status_code

    # JupyterHub answers 404 where the token may not even see the resource, 403 where it
    # sees it but lacks the action's scope. Either way, nothing happens.
    refused = {
        ("DELETE", f"/users/{other}/server"): 404,  # stop another user's server
        # read it (JupyterHub 5 has no GET of one server: 405 for everyone)
        ("GET", f"/users/{other}/server"): 404 if HUB_MAJOR >= 6 else 405,
        ("POST", f"/users/{user}/server"): 403,  # (re)start its own server
        ("POST", f"/users/{user}/servers/extra"): 403,  # start a new named server
        ("POST", f"/users/{other}/servers/extra"): 403,  # start one for another user
        ("GET", f"/users/{other}"): 404,  # read another user
        ("GET", "/users"): 403,  # list users
        ("POST", f"/users/{user}/tokens"): 403,  # mint itself more tokens
        ("GET", "/services"): 403,
        ("POST", "/users/newcomer"): 403,  # create users
    }
    assert call("GET", f"/users/{user}/server") == (200 if HUB_MAJOR >= 6 else 405)
    observed = {key: call(*key, json={}) if key[0] == "POST" else call(*key) for key in refused}
    assert observed == refused
    assert hub.server_model(other) is not None
    assert hub.server_model(user, "extra") is None
    assert hub.api("GET", "/users/newcomer").status_code == 404
    # Its own user model: name, groups and this one server; never auth_state or other servers.
    own = hub.api("GET", f"/users/{user}", token=token).json()
    assert "auth_state" not in own
    assert set(own["servers"]) == {""}

    sidecar = hub.sidecar_pid(user)
    hub.api("DELETE", f"/users/{user}/server")
    hub.wait_stopped(user)
    assert not pid_alive(sidecar), "the sidecar must stop with its server"
    assert call("GET", f"/users/{user}") == 403  # revoked
    remaining = hub.api("GET", f"/users/{user}/tokens").json()["api_tokens"]
    assert [t for t in remaining if t["note"] == token_note("walltime", user, "")] == []


def test_hub_down_at_the_deadline_stops_the_server_once_back(own_hub: Hub) -> None:
    user = "hubdown"
    model = own_hub.start_server(user, profile="fifteen")
    deadline = started_at(model) + 15
    time.sleep(max(0.0, deadline - 2 - time.time()))
    own_hub.stop()
    time.sleep(max(0.0, deadline + 10 - time.time()))  # down at the deadline, 10 s past it

    own_hub.start()
    back = time.time()
    stopping = own_hub.wait_stop_began(user, timeout=30)
    # the sidecar retries every 1.5-3 s (backoff cap 3 s with jitter)
    assert stopping - back < 5, f"stop began {stopping - back:.1f}s after the hub came back"
    own_hub.wait_stopped(user, timeout=20)
    retries = list(own_hub.log_records(message="hub request failed, retrying"))
    assert retries, "the sidecar should have retried while the hub was down"


def test_sidecars_stop_with_a_notebook_that_died(hub: Hub) -> None:
    model = hub.start_server("crash", profile="long")
    sidecar = hub.sidecar_pid("crash")
    os.kill(int(model["state"]["pid"]), signal.SIGKILL)  # the notebook crashes
    # The hub notices on its next poll; ask now rather than wait for the poll interval.
    assert hub.api("DELETE", "/users/crash/server").status_code in (202, 204)
    hub.wait_stopped("crash")
    deadline = time.monotonic() + 10
    while pid_alive(sidecar) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(sidecar)


def test_backstop_stops_a_server_whose_sidecar_died(hub: Hub) -> None:
    user = "backstop"
    model = hub.start_server(user, profile="ten")
    os.kill(hub.sidecar_pid(user), signal.SIGKILL)

    stopping = hub.wait_stop_began(user, timeout=40)

    overdue = stopping - started_at(model) - 10
    assert 3 <= overdue <= 3 + 2 + 2, overdue  # grace 3 s, then within one 2 s interval
    hub.wait_stopped(user, timeout=20)
    deadline = time.monotonic() + 10  # the backstop logs once the hub answered its DELETE
    while not list(hub.log_records(message="backstop stopped an overdue server", user=user)):
        assert time.monotonic() < deadline, "the backstop did not log the stop"
        time.sleep(0.2)


def test_unlimited_profile_gets_no_walltime_sidecar(hub: Hub) -> None:
    model = hub.start_server("unlimited", profile="unlimited")
    assert "sidecar_pids" not in model["state"]
    assert "walltime_seconds" not in model["user_options"]
    hub.api("DELETE", "/users/unlimited/server")
    hub.wait_stopped("unlimited")


def test_a_walltime_sent_by_the_user_is_overwritten(hub: Hub) -> None:
    hub.api("POST", "/users/sneaky")
    response = hub.api("POST", "/users/sneaky/server",
                       json={"profile": "fifteen", "walltime_seconds": 999999})
    assert response.status_code in (201, 202)
    model = hub.wait_ready("sneaky")
    assert model["user_options"]["walltime_seconds"] == 15
    hub.wait_stopped("sneaky", timeout=40)


async def test_hub_client_against_the_real_hub(hub: Hub) -> None:
    from services.hub.client import HubAuthError, HubClient, StopOutcome

    hub.start_server("client-a", profile="long")
    hub.start_server("client-b", "named", profile="long")
    async with HubClient(hub.api_url, hub.token) as client:
        model = await client.get_server("client-a")
        assert model is not None and model.ready and model.started is not None
        assert model.user_options["profile"] == "long"
        assert await client.get_server("client-a", "nope") is None
        assert await client.get_server("nobody") is None

        active = [(s.user, s.name) async for s in client.active_servers(page_size=1)]
        assert {("client-a", ""), ("client-b", "named")} <= set(active)
        assert len(active) == len(set(active))

        assert await client.stop_server("client-a", "nope") is StopOutcome.NOT_FOUND
        assert await client.stop_server("client-b", "named") in (StopOutcome.STOPPED,
                                                                 StopOutcome.PENDING)
        assert await client.stop_server("client-a") in (StopOutcome.STOPPED,
                                                         StopOutcome.PENDING)
    hub.wait_stopped("client-a")
    hub.wait_stopped("client-b", "named")
    # stopping a stopped default server is harmless
    async with HubClient(hub.api_url, hub.token) as client:
        assert await client.stop_server("client-a") is StopOutcome.STOPPED
    async with HubClient(hub.api_url, "not-a-token") as client:
        with pytest.raises(HubAuthError, match=r"\(403\)"):
            await client.get_server("client-a")


def test_a_user_picks_a_profile_on_the_spawn_page_and_gets_its_walltime(hub: Hub) -> None:
    """The demo's path: log in through the form, see the limits, pick a profile, start."""
    import re

    base = f"http://127.0.0.1:{hub.port}"
    with httpx.Client(base_url=base, follow_redirects=True, timeout=30) as browser:
        login = browser.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.text)
        assert xsrf, login.text[:500]
        browser.post("/hub/login", data={"username": "webuser", "password": "x",
                                         "_xsrf": xsrf.group(1)})
        form = browser.get("/hub/spawn")
        assert "Ten seconds" in form.text and "(Limits: 10 s)" in form.text
        assert "(Limits: no time limit)" in form.text
        assert "(Limits: 3GB RAM, 1.5 CPU, 2GB disk, 12 h)" in form.text
        action = re.search(r'id="spawn_form"\s+action="([^"]+)"', form.text)
        assert action, form.text[:2000]
        browser.post(action.group(1), data={"profile": "ten"}, follow_redirects=False)
    model = hub.wait_ready("webuser")
    assert model["user_options"] == {"profile": "ten", "walltime_seconds": 10}
    hub.wait_stopped("webuser", timeout=40)
