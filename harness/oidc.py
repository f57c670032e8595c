"""A real local OIDC provider (oidc-provider-mock from PyPI) and a browser-like login."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.hub import free_port
from harness.tools import require_tool, wait_http
from services.hub.client import HubUnavailable

USERS: list[dict[str, Any]] = [
    {"sub": "alice", "preferred_username": "alice", "uidNumber": 1001, "gidNumber": 1001,
     "groups": ["xray"]},
    {"sub": "bob", "preferred_username": "bob", "uidNumber": 1002, "gidNumber": 1002,
     "groups": []},
]


@dataclass
class OidcProvider:
    log_path: Path
    token_max_age: int = 10
    users: list[dict[str, Any]] = field(default_factory=lambda: list(USERS))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [require_tool("oidc-provider-mock"), "-p", str(self.port),
                   "-e", str(self.token_max_age)]
        for user in self.users:
            command += ["--user-claims", json.dumps(user)]
        self.process = subprocess.Popen(command, stdout=self.log_path.open("ab"),
                                        stderr=subprocess.STDOUT)
        wait_http(f"{self.issuer}/.well-known/openid-configuration", status=200)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def userinfo_status(self, access_token: str) -> int:
        """200 while the provider accepts the access token: how the tests check validity."""
        response = httpx.get(f"{self.issuer}/userinfo", timeout=10,
                             headers={"Authorization": f"Bearer {access_token}"})
        return response.status_code


def log_in(hub_url: str, user: str) -> httpx.Client:
    """Log in to the hub through the provider's form, as a browser would."""
    browser = httpx.Client(base_url=hub_url, follow_redirects=True, timeout=30)
    page = browser.get("/hub/oauth_login")
    assert 'name="sub"' in page.text, page.text[:300]
    done = browser.post(str(page.url), data={"sub": user})
    assert done.status_code == 200 and re.search(r"/hub/", str(done.url)), done.url
    return browser


def auth_state_for(provider: OidcProvider, user: str) -> dict[str, Any]:
    """What OAuthenticator stores after a login: the authorization-code flow, done directly."""
    import urllib.parse

    params = {"client_id": "jupyterhub", "redirect_uri": "http://127.0.0.1:9/cb",
              "response_type": "code", "scope": "openid profile", "state": "s"}
    consent = httpx.post(f"{provider.issuer}/oauth2/authorize", params=params,
                         data={"sub": user}, timeout=10)
    code = urllib.parse.parse_qs(urllib.parse.urlparse(consent.headers["location"]).query)
    tokens = httpx.post(f"{provider.issuer}/oauth2/token", auth=("jupyterhub", "secret"),
                        data={"grant_type": "authorization_code", "code": code["code"][0],
                              "redirect_uri": params["redirect_uri"]}, timeout=10).json()
    return {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
            "id_token": tokens.get("id_token"), "scope": tokens["scope"].split(),
            "token_response": tokens, "oauth_user": {"sub": user}}


@contextlib.contextmanager
def running_provider(log_path: Path, **options: Any) -> Iterator[OidcProvider]:
    """A started oidc-provider-mock, stopped afterwards."""
    instance = OidcProvider(log_path, **options)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


class AuthStateStore:
    """The two HubClient calls the broker makes, over a dict."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.reads = 0
        self.writes: list[dict[str, Any]] = []

    async def get_auth_state(self, user: str, **_: Any) -> dict[str, Any]:
        self.reads += 1
        return dict(self.state)

    async def set_auth_state(self, user: str, state: dict[str, Any], **_: Any) -> None:
        if self.failing:
            raise HubUnavailable("PATCH /users/alice failed after 1 tries: 503")
        self.writes.append(state)
        self.state = dict(state)

    failing = False
