"""tokenhelper against glewlwyd: 10 s access tokens, refresh tokens rotated on every use."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.faulty_proxy import FaultyProxy
from harness.glewlwyd import CLIENT_ID, CLIENT_SECRET, Glewlwyd, log_in
from harness.hub import Hub, free_port, process_env, sidecar_get, sidecar_url
from harness.tools import VENV_BIN, require_tool, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glewlwyd]:
    instance = Glewlwyd(tmp_path_factory.mktemp("glewlwyd"))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, provider: Glewlwyd) -> Iterator[Hub]:
    instance = Hub(tmp_path_factory.mktemp("glewlwyd-hub"), oidc_issuer=provider.issuer,
                   oidc_kind="glewlwyd")
    provider.allow_redirect(f"http://127.0.0.1:{instance.port}/hub/oauth_callback")
    instance.start()
    yield instance
    for user in instance.api("GET", "/users").json():
        instance.api("DELETE", f"/users/{user['name']}/server")
    instance.stop()


def start(hub: Hub, name: str) -> tuple[dict[str, str], dict[str, str]]:
    model = hub.start_server(name, profile="unlimited")
    helper = process_env(int(model["state"]["sidecar_pids"]["tokenhelper"]))
    notebook = process_env(int(model["state"]["pid"]))
    return helper, notebook


def test_short_lived_tokens_stay_valid_and_are_refreshed_once_per_lifetime(
        hub: Hub, provider: Glewlwyd) -> None:
    oidc_token = require_tool("oidc-token")
    name = log_in(hub, provider, "alice")
    first_state = hub.api("GET", f"/users/{name}").json()["auth_state"]
    helper, notebook = start(hub, name)
    base = sidecar_url(helper, "TOKENHELPER_")

    served = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        agent = subprocess.run([oidc_token, "facility"], capture_output=True, text=True,
                               env={**os.environ, "OIDC_SOCK": notebook["OIDC_SOCK"]},
                               timeout=20, check=False)
        tokens = [sidecar_get(base, "/token").text.strip(),
                  sidecar_get(base, "/v1/token").json()["access_token"],
                  Path(notebook["BEARER_TOKEN_FILE"]).read_text().strip(),
                  agent.stdout.strip()]
        for token in tokens:
            assert provider.active(token), "a served access token was not valid"
        served += len(tokens)
        time.sleep(0.5)

    refreshes = list(hub.log_records(message="access token refreshed", user=name))
    assert 5 <= len(refreshes) <= 15, f"{len(refreshes)} refreshes for {served} tokens served"
    assert all(r["rotated"] for r in refreshes) and all(r["expires_in_s"] == 10
                                                        for r in refreshes)
    # Each rotated refresh token was written back: the hub holds the newest state.
    stored = hub.api("GET", f"/users/{name}").json()["auth_state"]
    assert stored["refresh_token"] != first_state["refresh_token"]
    current = sidecar_get(base, "/token").text.strip()
    assert stored["access_token"] == current or provider.active(stored["access_token"])


def test_a_refresh_by_the_hub_in_between_is_survived(hub: Hub, provider: Glewlwyd) -> None:
    name = log_in(hub, provider, "bob")
    helper, _ = start(hub, name)
    base = sidecar_url(helper, "TOKENHELPER_")
    sidecar_get(base, "/token")

    # What OAuthenticator.refresh_user does: refresh with the stored token, store the result.
    state = hub.api("GET", f"/users/{name}").json()["auth_state"]
    fresh = httpx.post(f"{provider.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "refresh_token", "refresh_token": state["refresh_token"]}).json()
    state.update(access_token=fresh["access_token"], refresh_token=fresh["refresh_token"],
                 token_response=fresh)
    assert hub.api("PATCH", f"/users/{name}", json={"auth_state": state}).status_code == 200

    deadline = time.monotonic() + 20  # two lifetimes: the helper must refresh meanwhile
    while time.monotonic() < deadline:
        response = sidecar_get(base, "/token")
        assert response.status_code == 200, response.text
        assert provider.active(response.text.strip())
        time.sleep(1)
    assert list(hub.log_records(message="the hub refreshed the tokens meanwhile; using its "
                                         "newer ones"))


def _health(base: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base}/healthz", timeout=10).json())


def _wait(what: str, predicate: Callable[[], bool], base: str, provider: Glewlwyd,
          timeout: float) -> None:
    """Poll ``predicate``; meanwhile every served access token must be valid."""
    deadline = time.monotonic() + timeout
    while not predicate():
        token = httpx.get(f"{base}/token", timeout=10)
        assert token.status_code == 200 and provider.active(token.text.strip()), token.text
        assert time.monotonic() < deadline, f"{what} within {timeout} s: {_health(base)}"
        time.sleep(0.5)


def test_a_failed_write_back_never_loses_the_refresh_token(
        hub: Hub, provider: Glewlwyd, tmp_path: Path) -> None:
    """The hub fails the PATCH for a while (connection refused, 503, timeout, 403) while
    glewlwyd rotates the one-use refresh token every ~8 s: access tokens stay valid, the hub
    ends up holding the newest refresh token, and the next refresh works. At SIGTERM a
    pending write-back gets one last try."""
    name = log_in(hub, provider, "carol")
    proxy = FaultyProxy(hub.api_url.removesuffix("/hub/api")).start()
    port = free_port()
    log = tmp_path / "helper.log"
    env = {"PATH": os.environ["PATH"], "JUPYTERHUB_API_URL": f"{proxy.url}/hub/api",
           "JUPYTERHUB_USER": name, "TOKENHELPER_API_TOKEN": hub.token,
           "TOKENHELPER_OIDC_ISSUER": provider.issuer, "TOKENHELPER_CLIENT_ID": CLIENT_ID,
           "TOKENHELPER_CLIENT_SECRET": CLIENT_SECRET, "TOKENHELPER_RUN_DIR": str(tmp_path / "r"),
           "TOKENHELPER_WRITE_BACK": "true", "TOKENHELPER_MIN_VALID": "2s",
           "TOKENHELPER_HUB_TIMEOUT": "2s", "TOKENHELPER_PORT": str(port)}
    with log.open("wb") as output:
        helper = subprocess.Popen([str(VENV_BIN / "jupyterhub-sidecars"), "tokenhelper"],
                                  env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", status=200, timeout=30)
        for fault in ("refused", 503, "timeout", 403):
            before = hub.api("GET", f"/users/{name}").json()["auth_state"]["refresh_token"]
            proxy.set_fault(fault)
            _wait(f"a write-back failing with {fault}",
                  lambda: bool(_health(base)["write_back"]["pending"]), base, provider, 20)
            assert _health(base)["ok"] is True  # liveness must not restart it now
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
            assert "jupyterhub_sidecars_tokenhelper_write_back_pending 1.0" in metrics
            proxy.set_fault(None)
            _wait(f"the write-back after {fault}",
                  lambda: not _health(base)["write_back"]["pending"], base, provider, 40)
            stored = hub.api("GET", f"/users/{name}").json()["auth_state"]["refresh_token"]
            assert stored != before
            refreshes = _count(log, "access token refreshed")
            _wait("the next refresh", lambda n=refreshes: _count(log, "access token refreshed")
                  > n, base, provider, 20)  # type: ignore[misc]
        assert _count(log, "could not store the rotated refresh token") >= 4
        assert _count(log, "the hub refreshed the tokens meanwhile") == 0  # never a replay

        # SIGTERM while a write-back is pending: the hub is back just in time.
        proxy.set_fault(503)
        _wait("a pending write-back", lambda: bool(_health(base)["write_back"]["pending"]),
              base, provider, 20)
        proxy.set_fault(None)
        helper.send_signal(signal.SIGTERM)
        assert helper.wait(20) == 0
        assert _count(log, "rotated refresh token stored at the hub at shutdown") == 1
        stored = hub.api("GET", f"/users/{name}").json()["auth_state"]["refresh_token"]
        assert provider.refresh(stored).status_code == 200  # the newest, never used
    finally:
        helper.kill()
        helper.wait()
        proxy.stop()
    assert "Traceback" not in log.read_text()


def _count(log: Path, message: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if message in line)
