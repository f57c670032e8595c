"""glewlwyd 2.7 (Debian) as a real OIDC provider with JWT access tokens, short lifetimes,
refresh-token rotation (one use each) and introspection, set up from scratch by script."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.hub import free_port
from tests.tools import require_tool, wait_http

SCHEMA = Path("/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz")
CLIENT_ID, CLIENT_SECRET = "jupyterhub", "glewlwyd-client-secret"
REDIRECT = "http://127.0.0.1:9/cb"
USERS = {"alice": "alice-password", "bob": "bob-password"}

CONFIG = """port={port}
bind_address="127.0.0.1"
external_url="http://127.0.0.1:{port}"
login_url="login.html"
api_prefix="api"
static_files_path="/usr/share/glewlwyd/webapp/"
allow_origin="*"
log_mode="console"
log_level="INFO"
cookie_domain="127.0.0.1"
cookie_secure=0
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="/usr/lib/glewlwyd/user"
user_middleware_module_path="/usr/lib/glewlwyd/user_middleware"
client_module_path="/usr/lib/glewlwyd/client"
user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"
plugin_module_path="/usr/lib/glewlwyd/plugin"
use_secure_connection=false
secure_connection_key_file=""
secure_connection_pem_file=""
hash_algorithm="SHA512"
database = {{
  type = "sqlite3"
  path = "{db}"
}};
"""


@dataclass
class Glewlwyd:
    state_dir: Path
    access_token_lifetime: int = 10
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def issuer(self) -> str:
        return f"{self.base}/oidc"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "glewlwyd.log"

    def start(self) -> None:
        binary = require_tool("glewlwyd")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        db = self.state_dir / "glewlwyd.db"
        if not db.exists():
            with sqlite3.connect(db) as connection:
                connection.executescript(gzip.decompress(SCHEMA.read_bytes()).decode())
        conf = self.state_dir / "glewlwyd.conf"
        conf.write_text(CONFIG.format(port=self.port, db=db))
        self._launch(binary, conf)
        admin = httpx.Client(base_url=self.base, timeout=10)
        assert admin.post("/auth/", json={"username": "admin", "password": "password"}
                          ).status_code == 200
        parameters = self._plugin_parameters()
        assert admin.post("/mod/plugin/", json={
            "module": "oidc", "name": "oidc", "display_name": "OIDC", "enabled": True,
            "parameters": parameters}).status_code == 200
        for user, password in USERS.items():
            assert admin.post("/user/", json={"username": user, "password": password,
                                              "name": user, "enabled": True,
                                              "scope": ["openid"]}).status_code == 200
        assert admin.post("/client/", json={
            "client_id": CLIENT_ID, "name": CLIENT_ID, "enabled": True, "confidential": True,
            "client_secret": CLIENT_SECRET, "redirect_uri": [REDIRECT],
            "authorization_type": ["code", "refresh_token"], "scope": ["openid"],
            "token_endpoint_auth_method": ["client_secret_basic", "client_secret_post"],
        }).status_code == 200
        admin.close()
        # The plugin reads its parameters when it starts: restart once configured.
        self.stop()
        self._launch(binary, conf)

    def _launch(self, binary: str, conf: Path) -> None:
        self.process = subprocess.Popen([binary, "-c", str(conf)],
                                        stdout=self.log_path.open("ab"),
                                        stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{self.port}/")

    def _plugin_parameters(self) -> dict[str, Any]:
        return {
            "iss": self.issuer, "jwt-type": "sha", "jwt-key-size": "256",
            "key": "a-test-only-signing-secret-of-32b", "access-token-duration":
            self.access_token_lifetime, "refresh-token-duration": 3600, "code-duration": 600,
            "refresh-token-rolling": True, "refresh-token-one-use": "always",
            "client-refresh-token-one-use-parameter": "refresh-token-one-use",
            "allow-non-oidc": False, "auth-type-code-enabled": True,
            "auth-type-token-enabled": False, "auth-type-id-token-enabled": True,
            "auth-type-none-enabled": False, "auth-type-password-enabled": False,
            "auth-type-client-enabled": False, "auth-type-device-enabled": False,
            "auth-type-refresh-enabled": True, "scope": [], "additional-parameters": [],
            "claims": [], "allowed-scope": ["openid"], "secret-type": "public",
            "address-claim": {"type": "no", "formatted": "", "street_address": "",
                              "locality": "", "region": "", "postal_code": "", "country": "",
                              "mandatory": False},
            "name-claim": "no", "email-claim": "no", "scope-claim": "no",
            "introspection-revocation-allowed": True, "introspection-revocation-auth-scope": [],
            "introspection-revocation-allow-target-client": True, "jwks-show": True,
            "oauth-as-iss-id": False, "request-parameter-allow": False,
            "pkce-allowed": True,  # OAuthenticator sends a PKCE challenge
        }

    def allow_redirect(self, uri: str) -> None:
        """Register another redirect URI for the client (e.g. a hub's oauth_callback)."""
        with httpx.Client(base_url=self.base, timeout=10) as admin:
            admin.post("/auth/", json={"username": "admin", "password": "password"})
            client = admin.get(f"/client/{CLIENT_ID}").json()
            client.pop("source", None)
            client["redirect_uri"] = [*client["redirect_uri"], uri]
            assert admin.put(f"/client/{CLIENT_ID}", json=client).status_code == 200

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def sign_in(self, browser: httpx.Client, user: str) -> None:
        """What glewlwyd's login page does: authenticate, grant the client the scope."""
        assert browser.post(f"{self.base}/auth/", json={
            "username": user, "password": USERS[user]}).status_code == 200
        assert browser.put(f"{self.base}/auth/grant/{CLIENT_ID}",
                           json={"scope": "openid"}).status_code == 200

    def tokens_for(self, user: str) -> dict[str, Any]:
        """A code flow done directly: the token response OAuthenticator would store."""
        with httpx.Client(timeout=10) as browser:
            self.sign_in(browser, user)
            consent = browser.get(f"{self.issuer}/auth", follow_redirects=False, params={
                "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
                "scope": "openid", "nonce": "n", "state": "s", "g_continue": ""})
            code = urllib.parse.parse_qs(urllib.parse.urlparse(
                consent.headers["location"]).query)["code"][0]
        return dict(httpx.post(f"{self.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET),
                               data={"grant_type": "authorization_code", "code": code,
                                     "redirect_uri": REDIRECT}, timeout=10).json())

    def active(self, access_token: str) -> bool:
        """RFC 7662 introspection at the provider: is this access token valid now?"""
        answer = httpx.post(f"{self.issuer}/introspect", data={"token": access_token},
                            auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
        return bool(answer.json().get("active"))
