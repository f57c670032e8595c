"""tokenhelper end to end: real JupyterHub with GenericOAuthenticator, real OIDC provider."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness.hub import Hub, process_env, secret_file, sidecar_get, sidecar_url
from harness.oidc import OidcProvider, log_in
from harness.tools import require_tool
from services.hub.hooks import token_note, tokenhelper_scopes

pytestmark = pytest.mark.slow


def helper_pid(hub: Hub, user: str) -> int:
    model = hub.server_model(user)
    assert model is not None
    return int(model["state"]["sidecar_pids"]["tokenhelper"])


def start_logged_in(hub: Hub, user: str) -> dict[str, str]:
    log_in(f"http://127.0.0.1:{hub.port}", user).close()
    hub.start_server(user, profile="unlimited")
    env = process_env(helper_pid(hub, user))
    return env


def test_notebook_gets_fresh_access_tokens_three_ways(oidc_hub: Hub,
                                                      module_provider: OidcProvider) -> None:
    oidc_token = require_tool("oidc-token")
    env = start_logged_in(oidc_hub, "alice")
    base = sidecar_url(env, "TOKENHELPER_")
    model = oidc_hub.server_model("alice")
    assert model is not None
    notebook = process_env(int(model["state"]["pid"]))
    bearer_file = Path(notebook["BEARER_TOKEN_FILE"])
    assert bearer_file == Path(env["TOKENHELPER_RUN_DIR"]) / f"bt_u{os.geteuid()}"

    # The login's access token lives 10 s; auth_state does not say when it was issued, so the
    # helper refreshes once at start. (oidc-provider-mock then issues 3600 s tokens whatever
    # -e says; short refreshed lifetimes need a provider such as glewlwyd.)
    deadline = time.monotonic() + 15  # past the login token's 10 s lifetime
    requests = 0
    while time.monotonic() < deadline:
        text = sidecar_get(base, "/token").text.strip()
        body = sidecar_get(base, "/v1/token").json()
        from_file = bearer_file.read_text().strip()
        agent = subprocess.run([oidc_token, "facility"], capture_output=True, text=True,
                               env={**os.environ, "OIDC_SOCK": notebook["OIDC_SOCK"]},
                               timeout=20, check=False)
        requests += 3
        assert agent.returncode == 0, agent.stderr
        assert text == body["access_token"] == from_file == agent.stdout.strip()
        assert module_provider.userinfo_status(text) == 200
        assert body["token_type"] == "Bearer"
        assert 3500 < body["expires_in"] <= 3600
        time.sleep(0.5)
    assert stat.S_IMODE(bearer_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(notebook["OIDC_SOCK"]).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(notebook["JUPYTERHUB_SIDECARS_ARC_KEY"]).stat().st_mode) == 0o400
    assert Path(notebook["JUPYTERHUB_SIDECARS_ARC_CERT"]).exists()
    assert stat.S_IMODE(bearer_file.parent.stat().st_mode) == 0o700
    refreshed = list(oidc_hub.log_records(message="access token refreshed", user="alice"))
    assert len(refreshed) == 1, f"{len(refreshed)} refreshes for {requests} requests"


def test_helper_token_is_scoped_to_one_users_auth_state(oidc_hub: Hub) -> None:
    env = start_logged_in(oidc_hub, "bob")
    token = secret_file(env, "TOKENHELPER_API_TOKEN_FILE")

    def call(method: str, path: str, **kwargs) -> httpx.Response:
        return oidc_hub.api(method, path, token=token, **kwargs)

    own = call("GET", "/users/bob")
    assert own.status_code == 200 and own.json()["auth_state"]["refresh_token"]
    assert call("GET", "/users/alice").status_code == 404
    assert call("GET", "/users").status_code == 403
    assert call("DELETE", "/users/bob/server").status_code == 403
    assert oidc_hub.server_model("bob") is not None
    assert call("PATCH", "/users/bob", json={"admin": True}).status_code == 403
    assert call("POST", "/users/bob/tokens", json={}).status_code == 403

    assert sorted(tokenhelper_scopes("bob", False)) == [
        "admin:auth_state!user=bob", "read:users:name!user=bob"]
    oidc_hub.api("DELETE", "/users/bob/server")
    oidc_hub.wait_stopped("bob")
    assert call("GET", "/users/bob").status_code == 403  # revoked at stop
    assert token_note("tokenhelper", "bob", "") == "jupyterhub-sidecars tokenhelper for bob/"


def test_notebook_sees_access_tokens_only(oidc_hub: Hub) -> None:
    env = start_logged_in(oidc_hub, "alice") if oidc_hub.server_model("alice") is None \
        else process_env(helper_pid(oidc_hub, "alice"))
    model = oidc_hub.server_model("alice")
    assert model is not None
    notebook_env = process_env(int(model["state"]["pid"]))
    assert notebook_env["BEARER_TOKEN_FILE"].endswith(f"bt_u{os.geteuid()}")
    auth_state = oidc_hub.api("GET", "/users/alice").json()["auth_state"]
    secrets = [auth_state["refresh_token"], auth_state["id_token"],
               secret_file(env, "TOKENHELPER_API_TOKEN_FILE"),
               secret_file(env, "TOKENHELPER_CLIENT_SECRET_FILE")]
    everything = "\n".join(notebook_env.values())
    for secret in secrets:
        assert secret not in everything
    base = sidecar_url(env, "TOKENHELPER_")
    served = sidecar_get(base, "/v1/token").text + sidecar_get(base, "/token").text + \
        sidecar_get(base, "/metrics").text
    for secret in secrets:
        assert secret not in served
    # The sidecars log into the hub's output; none of it may carry a secret.
    hub_log = oidc_hub.log_path.read_text()
    for secret in secrets:
        assert secret not in hub_log
