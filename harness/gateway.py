"""A real kubepie gateway process (local backend) in front of real file servers, with the
real local OIDC provider, for the tests. Users' folders are owned by their uids when the
tests run as root (CI), so the kernel decides who may read what."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.fileserver import running_as_root
from harness.glewlwyd import Glewlwyd
from harness.hub import free_port
from harness.oidc import USERS, OidcProvider, running_provider
from harness.tools import VENV_BIN, stop_process, wait_http

CLIENT_ID, CLIENT_SECRET = "kubepie", "kubepie-secret"
ACCESS_LOGGER = "services.kubepie.gateway.app.access"
GROUP_GIDS = {"xray": 5000}


def user_claims(name: str) -> dict[str, Any]:
    return next(u for u in USERS if u["sub"] == name)


def make_homes(root: Path) -> Path:
    """``root/home/<user>`` for each test user, owned by their uid (as root), mode 0700, and
    a shared ``root/data`` where each user has a private file."""
    root.chmod(0o755)
    for user in USERS:
        home = root / "home" / user["sub"]
        home.mkdir(parents=True)
        (home / "secret.txt").write_text(f"{user['sub']}'s secret\n")
        (root / "data").mkdir(exist_ok=True, mode=0o1777)
        private = root / "data" / f"{user['sub']}-private.txt"
        private.write_text(f"only {user['sub']}\n")
        private.chmod(0o600)
        home.chmod(0o700)
        if running_as_root():
            for path in (home, home / "secret.txt", private):
                os.chown(path, user["uidNumber"], user["gidNumber"])
    (root / "home").chmod(0o755)
    (root / "data").chmod(0o1777)
    return root


@dataclass
class Gateway:
    provider: OidcProvider | Glewlwyd
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / f"gateway-{self.port}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPIE_")}
        env.update({
            "KUBEPIE_OIDC_ISSUER": self.provider.issuer, "KUBEPIE_CLIENT_ID": CLIENT_ID,
            "KUBEPIE_CLIENT_SECRET": CLIENT_SECRET, "KUBEPIE_PUBLIC_URL": self.url,
            "KUBEPIE_SESSION_SECRET": secrets.token_urlsafe(32), "KUBEPIE_PORT": str(self.port),
            "KUBEPIE_KEY_STORE": str(self.root / "keys.sqlite"),
            "KUBEPIE_GROUP_GIDS": ",".join(f"{g}={n}" for g, n in GROUP_GIDS.items()),
            "KUBEPIE_LEEWAY": "1s", "KUBEPIE_LOG_LEVEL": "debug",
        })
        if "KUBEPIE_STORAGE_FILE" not in self.extra_env:
            env["KUBEPIE_STORAGE_FILE"] = str(write_storage(self.root))
        env.update(self.extra_env)
        return env

    def start(self) -> Gateway:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "jupyterhub-sidecars"), "kubepie", "gateway"],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/healthz", status=200, timeout=20)
        return self

    def stop(self) -> int | None:
        return stop_process(self.process, timeout=15)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def access_log(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("logger") == ACCESS_LOGGER:
                    records.append(record)
        return records


def access_token(provider: OidcProvider, user: str) -> str:
    """The provider's (opaque) access token for ``user``: checked at userinfo."""
    return str(tokens_for(provider, user)["access_token"])


def write_storage(root: Path, *, data: bool = True) -> Path:
    """The storage definition of the tests: ``root/home/<user>`` (and ``root/data``) as
    hostPath volumes, the form of this machine's folders."""
    definition: dict[str, Any] = {
        "volumes": [{"name": "homes", "hostPath": {"path": str(root / "home")}}],
        "mounts": [{"name": "home", "volume": "homes", "subPath": "{username}",
                    "path": "/home/{username}"}]}
    if data:
        definition["volumes"].append({"name": "data", "hostPath": {"path": str(root / "data")}})
        definition["mounts"].append({"name": "data", "volume": "data", "path": "/data"})
    path = root / "gateway-storage.yaml"
    path.write_text(json.dumps(definition))  # JSON is YAML
    return path


def tokens_for(provider: OidcProvider, user: str, client_id: str = CLIENT_ID) -> dict[str, Any]:
    """The provider's token response for ``user`` (authorization code, done directly)."""
    params = {"client_id": client_id, "redirect_uri": "http://127.0.0.1:9/cb",
              "response_type": "code", "scope": "openid profile", "state": "s"}
    consent = httpx.post(f"{provider.issuer}/oauth2/authorize", params=params,
                         data={"sub": user}, timeout=10)
    code = urllib.parse.parse_qs(urllib.parse.urlparse(consent.headers["location"]).query)
    answer = httpx.post(f"{provider.issuer}/oauth2/token", auth=(client_id, "x"),
                        data={"grant_type": "authorization_code", "code": code["code"][0],
                              "redirect_uri": params["redirect_uri"]}, timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def temp_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="kubepie-gw-"))


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_gateway(root: Path, extra_env: dict[str, str] | None = None
                    ) -> Iterator[tuple[Gateway, OidcProvider]]:
    """The local OIDC provider and a gateway in front of ``root``'s homes (opaque tokens
    checked at userinfo); both stopped and ``root`` removed afterwards."""
    try:
        with running_provider(root / "provider.log", token_max_age=3600) as provider:
            gateway = Gateway(provider, root, {"KUBEPIE_OPAQUE_TOKENS": "userinfo",
                                               **(extra_env or {})})
            try:
                gateway.start()
                yield gateway, provider
            finally:
                gateway.stop()
    finally:
        remove(root)
