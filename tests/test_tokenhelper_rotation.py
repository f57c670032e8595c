"""tokenhelper against glewlwyd: 10 s access tokens, refresh tokens rotated on every use."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.glewlwyd import CLIENT_ID, CLIENT_SECRET, Glewlwyd
from tests.hub import Hub, process_env
from tests.tools import require_tool

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


def log_in(hub: Hub, provider: Glewlwyd, user: str) -> str:
    """Log in to the hub through glewlwyd; return the hub's name for the user (its sub)."""
    before = {u["name"] for u in hub.api("GET", "/users").json()}
    with httpx.Client(timeout=30) as browser:
        provider.sign_in(browser, user)
        start = browser.get(f"http://127.0.0.1:{hub.port}/hub/oauth_login",
                            follow_redirects=False)
        done = browser.get(start.headers["location"] + "&g_continue=", follow_redirects=True)
        assert done.status_code == 200 and "/hub/" in str(done.url), done.url
    [name] = {u["name"] for u in hub.api("GET", "/users").json()} - before
    return str(name)


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
    base = f"http://127.0.0.1:{helper['TOKENHELPER_PORT']}"

    served = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        agent = subprocess.run([oidc_token, "facility"], capture_output=True, text=True,
                               env={**os.environ, "OIDC_SOCK": notebook["OIDC_SOCK"]},
                               timeout=20, check=False)
        tokens = [httpx.get(base + "/token", timeout=10).text.strip(),
                  httpx.get(base + "/v1/token", timeout=10).json()["access_token"],
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
    current = httpx.get(base + "/token", timeout=10).text.strip()
    assert stored["access_token"] == current or provider.active(stored["access_token"])


def test_a_refresh_by_the_hub_in_between_is_survived(hub: Hub, provider: Glewlwyd) -> None:
    name = log_in(hub, provider, "bob")
    helper, _ = start(hub, name)
    base = f"http://127.0.0.1:{helper['TOKENHELPER_PORT']}"
    httpx.get(base + "/token", timeout=10)

    # What OAuthenticator.refresh_user does: refresh with the stored token, store the result.
    state = hub.api("GET", f"/users/{name}").json()["auth_state"]
    fresh = httpx.post(f"{provider.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "refresh_token", "refresh_token": state["refresh_token"]}).json()
    state.update(access_token=fresh["access_token"], refresh_token=fresh["refresh_token"],
                 token_response=fresh)
    assert hub.api("PATCH", f"/users/{name}", json={"auth_state": state}).status_code == 200

    deadline = time.monotonic() + 20  # two lifetimes: the helper must refresh meanwhile
    while time.monotonic() < deadline:
        response = httpx.get(base + "/token", timeout=10)
        assert response.status_code == 200, response.text
        assert provider.active(response.text.strip())
        time.sleep(1)
    assert list(hub.log_records(message="the hub refreshed the tokens meanwhile; using its "
                                         "newer ones"))
