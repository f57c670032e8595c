"""Tokens meant for one service, end to end: glewlwyd issues audience-restricted tokens (RFC
8707 resource indicators, RS256 RFC 9068 JWTs), the hub logs alice in asking for the gateway
and a storage endpoint as resources, and from the notebook's side ``/v1/token?audience=``,
``/token?audience=`` and the real ``oidc-token --aud`` get tokens that the kubepie gateway
(accepting only tokens for its own URL) takes, while the default token and the WLCG bearer
file stay as they were. Refused audiences and scopes the provider would not narrow are clear
errors, never a broader token."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.gateway import Gateway, make_homes, remove, temp_root
from harness.glewlwyd import Glewlwyd, log_in
from harness.hub import Hub, process_env, sidecar_get, sidecar_url
from harness.tools import require_tool

pytestmark = pytest.mark.slow
DCACHE = "https://dcache.example.org/"
SCOPES = ("storage.read:/home", "storage.modify:/home")


@dataclass
class Platform:
    gateway: Gateway
    provider: Glewlwyd
    hub: Hub
    helper: str = ""                      # the tokenhelper's URL (its socket)
    notebook: dict[str, str] | None = None  # the notebook's environment


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    root = make_homes(temp_root())
    gateway = Gateway(None, root, {"KUBEPIE_LEEWAY": "1s"})  # type: ignore[arg-type]
    # Refresh tokens are not rotated: glewlwyd binds a rotated refresh token to the one
    # resource it was used for (docs/tokenhelper.md), which would end narrowing after one use.
    provider = Glewlwyd(root / "glewlwyd", access_token_lifetime=60, signing="rsa",
                        resources=(gateway.url, DCACHE), scopes=SCOPES,
                        rotate_refresh_tokens=False)
    gateway.provider = provider
    hub = Hub(root / "hub", oidc_issuer=provider.issuer, oidc_kind="glewlwyd", extra_env={
        "TEST_OIDC_RESOURCES": f"{gateway.url},{DCACHE}",
        "TEST_OIDC_SCOPES": " ".join(("openid", *SCOPES))})
    (root / "hub").mkdir()
    try:
        provider.start()
        provider.allow_redirect(f"http://127.0.0.1:{hub.port}/hub/oauth_callback")
        gateway.start()
        hub.start()
        platform = Platform(gateway, provider, hub)
        name = log_in(hub, provider, "alice")
        model = hub.start_server(name, profile="unlimited")
        helper_env = process_env(int(model["state"]["sidecar_pids"]["tokenhelper"]))
        platform.helper = sidecar_url(helper_env, "TOKENHELPER_")
        platform.notebook = process_env(int(model["state"]["pid"]))
        yield platform
    finally:
        for user in hub.api("GET", "/users").json() if hub.process else []:
            hub.api("DELETE", f"/users/{user['name']}/server")
        hub.stop()
        gateway.stop()
        provider.stop()
        remove(root)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def files(platform: Platform, token: str) -> httpx.Response:
    return httpx.get(f"{platform.gateway.url}/home/secret.txt", timeout=30,
                     headers={"Authorization": f"Bearer {token}"})


def as_notebook(platform: Platform, script: str) -> subprocess.CompletedProcess[str]:
    """A shell in the notebook's environment (OIDC_SOCK, BEARER_TOKEN_FILE, ...)."""
    assert platform.notebook is not None
    env = {**platform.notebook, "PATH": os.environ["PATH"], "GW": platform.gateway.url}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_the_notebook_reaches_the_gateway_with_a_token_for_it(platform: Platform) -> None:
    gateway = platform.gateway.url
    default = sidecar_get(platform.helper, "/token").text.strip()
    assert claims(default)["aud"] != gateway
    assert files(platform, default).status_code == 401  # the gateway takes only its own

    answer = sidecar_get(platform.helper, f"/v1/token?audience={gateway}")
    assert answer.status_code == 200, answer.text
    narrow = answer.json()["access_token"]
    assert claims(narrow)["aud"] == gateway and 0 < answer.json()["expires_in"] <= 60
    assert files(platform, narrow).text == "alice's secret\n"
    text = sidecar_get(platform.helper, f"/token?audience={gateway}").text.strip()
    assert text == narrow  # cached per audience: one refresh

    require_tool("oidc-token")
    shell = as_notebook(platform, 'curl -sSf -H "Authorization: Bearer '
                                  '$(oidc-token --aud="$GW" facility)" "$GW/home/secret.txt"')
    assert shell.returncode == 0 and shell.stdout == "alice's secret\n", shell.stderr

    # A token for the storage endpoint does not open the gateway; the default stays put.
    dcache = sidecar_get(platform.helper, f"/v1/token?audience={DCACHE}").json()
    assert claims(dcache["access_token"])["aud"] == DCACHE
    assert files(platform, dcache["access_token"]).status_code == 401
    assert platform.notebook is not None
    assert Path(platform.notebook["BEARER_TOKEN_FILE"]).read_text().strip() == \
        sidecar_get(platform.helper, "/token").text.strip()
    assert claims(sidecar_get(platform.helper, "/token").text.strip())["aud"] != gateway


def test_what_cannot_be_had_is_a_clear_error_never_a_broader_token(
        platform: Platform) -> None:
    other = sidecar_get(platform.helper, "/v1/token?audience=https://elsewhere.example/")
    assert other.status_code == 400 and other.json()["error"] == "invalid_target"
    assert "https://elsewhere.example/" in other.json()["message"]

    # Beyond the login's scopes: refused here, before the provider is asked.
    beyond = sidecar_get(platform.helper, "/v1/token?scope=storage.create:/")
    assert beyond.status_code == 400 and "not among the login's scopes" in \
        beyond.json()["message"]
    # glewlwyd answers a narrower scope with all of the login's: not handed out.
    ignored = sidecar_get(platform.helper, "/v1/token?scope=storage.read:/home")
    assert ignored.status_code == 400 and "ignored the narrower scope" in \
        ignored.json()["message"], ignored.text
    shell = as_notebook(platform, "oidc-token --scope=storage.read:/home facility")
    assert shell.returncode != 0 and "ignored the narrower scope" in shell.stderr + shell.stdout
    bad = sidecar_get(platform.helper, "/v1/token?audience=%01")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"

    # After all that, the default token and the audience tokens still come.
    assert sidecar_get(platform.helper, "/token").status_code == 200
    gateway = platform.gateway.url
    fresh = sidecar_get(platform.helper, f"/v1/token?audience={gateway}&min_valid=59s")
    assert fresh.status_code == 200 and files(platform, fresh.json()["access_token"]).text == \
        "alice's secret\n"
