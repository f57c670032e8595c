"""glewlwyd 2.7 (Debian) as a real OIDC provider with JWT access tokens, short lifetimes,
refresh-token rotation (one use each) and introspection, set up from scratch by script.

With ``signing="rsa"`` its tokens are RS256 JWTs verifiable from its JWKS (RFC 9068 access
tokens: header ``typ: at+jwt``), and the users carry POSIX claims (``uidNumber``,
``gidNumber``, ``groups``) in id tokens, userinfo and access tokens — the groups joined into
one comma-separated string, as glewlwyd does with multi-valued properties. RFC 8707 resource
indicators are allowed for the URLs in ``resources``.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.hub import Hub, free_port
from harness.tools import require_tool, wait_http

SCHEMA = Path("/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz")
CLIENT_ID, CLIENT_SECRET = "jupyterhub", "glewlwyd-client-secret"
REDIRECT = "http://127.0.0.1:9/cb"
USERS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password",
         "mallory": "mallory-password"}
# POSIX identities of the users (user properties → claims), as LDAP would give them; carol
# has none, mallory claims root.
POSIX: dict[str, dict[str, Any]] = {
    "alice": {"uidNumber": "1001", "gidNumber": "1001", "groups": ["xray", "bio"]},
    "bob": {"uidNumber": "1002", "gidNumber": "1002", "groups": ["xray"]},
    "carol": {},
    "mallory": {"uidNumber": "0", "gidNumber": "0", "groups": ["xray"]}}
POSIX_CLAIMS = (("uidNumber", "number"), ("gidNumber", "number"), ("groups", "string"))

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
    signing: Literal["sha", "rsa"] = "sha"
    resources: tuple[str, ...] = ()          # RFC 8707 resource indicators allowed
    clients: tuple[str, ...] = ()            # more confidential clients (secret: <id>-secret)
    rotate_refresh_tokens: bool = True       # one use each (else reused until they expire)
    scopes: tuple[str, ...] = ()             # more scopes users may grant (WLCG storage.*)
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
                _allow_posix_properties(connection)
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
        for scope in self.scopes:
            assert admin.post("/scope/", json={
                "name": scope, "display_name": scope, "description": scope,
                "password_required": False, "scheme": {}}).status_code == 200
        for user, password in USERS.items():
            assert admin.post("/user/", json={"username": user, "password": password,
                                              "name": user, "enabled": True,
                                              "scope": ["openid", *self.scopes], **POSIX[user]}
                              ).status_code == 200
        for client_id in (CLIENT_ID, *self.clients):
            secret = CLIENT_SECRET if client_id == CLIENT_ID else f"{client_id}-secret"
            assert admin.post("/client/", json={
                "client_id": client_id, "name": client_id, "enabled": True,
                "confidential": True, "client_secret": secret, "redirect_uri": [REDIRECT],
                "authorization_type": ["code", "refresh_token"],
                "scope": ["openid", *self.scopes],
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
            "iss": self.issuer, "jwt-key-size": "256", **self._signing_key(),
            "access-token-duration":
            self.access_token_lifetime, "refresh-token-duration": 3600, "code-duration": 600,
            "refresh-token-rolling": True,
            "refresh-token-one-use": "always" if self.rotate_refresh_tokens else "never",
            "client-refresh-token-one-use-parameter": "refresh-token-one-use",
            "allow-non-oidc": False, "auth-type-code-enabled": True,
            "auth-type-token-enabled": False, "auth-type-id-token-enabled": True,
            "auth-type-none-enabled": False, "auth-type-password-enabled": False,
            "auth-type-client-enabled": False, "auth-type-device-enabled": False,
            "auth-type-refresh-enabled": True, "scope": [],
            "allowed-scope": ["openid", *self.scopes], "secret-type": "public",
            "address-claim": {"type": "no", "formatted": "", "street_address": "",
                              "locality": "", "region": "", "postal_code": "", "country": "",
                              "mandatory": False},
            "name-claim": "no", "email-claim": "no", "scope-claim": "no",
            "introspection-revocation-allowed": True, "introspection-revocation-auth-scope": [],
            "introspection-revocation-allow-target-client": True, "jwks-show": True,
            "oauth-as-iss-id": False, "request-parameter-allow": False,
            "pkce-allowed": True,  # OAuthenticator sends a PKCE challenge
            # The users' POSIX identity in id tokens and userinfo, and in access tokens
            # (where glewlwyd joins a list into "a,b").
            "claims": [{"name": name, "user-property": name, "type": kind,
                        "mandatory": True, "on-demand": False, "scope": []}
                       for name, kind in POSIX_CLAIMS],
            "additional-parameters": [
                {"user-parameter": "username", "token-parameter": "preferred_username"},
                *({"user-parameter": name, "token-parameter": name}
                  for name, _ in POSIX_CLAIMS)],
            "resource-allowed": bool(self.resources),
            "resource-scope": {scope: list(self.resources) for scope in ("openid", *self.scopes)},
            "resource-change-allowed": bool(self.resources),
        }

    def _signing_key(self) -> dict[str, Any]:
        if self.signing == "sha":
            return {"jwt-type": "sha", "key": "a-test-only-signing-secret-of-32b"}
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo
                                               ).decode()
        return {"jwt-type": "rsa", "key": private, "cert": public}

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

    def sign_in(self, browser: httpx.Client, user: str, client_id: str = CLIENT_ID) -> None:
        """What glewlwyd's login page does: authenticate, grant the client the scope."""
        assert browser.post(f"{self.base}/auth/", json={
            "username": user, "password": USERS[user]}).status_code == 200
        assert browser.put(f"{self.base}/auth/grant/{client_id}",
                           json={"scope": " ".join(("openid", *self.scopes))}
                           ).status_code == 200

    def tokens_for(self, user: str, *, client_id: str = CLIENT_ID,
                   resource: str | None = None) -> dict[str, Any]:
        """A code flow done directly: the token response OAuthenticator would store; with
        ``resource`` (RFC 8707) the access token's ``aud`` is that URL."""
        secret = CLIENT_SECRET if client_id == CLIENT_ID else f"{client_id}-secret"
        extra = {"resource": resource} if resource else {}
        with httpx.Client(timeout=10) as browser:
            self.sign_in(browser, user, client_id)
            consent = browser.get(f"{self.issuer}/auth", follow_redirects=False, params={
                "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                "scope": "openid", "nonce": "n", "state": "s", "g_continue": "", **extra})
            location = consent.headers.get("location", "")
            query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
            assert "code" in query, f"no code: {consent.status_code} {location}"
        answer = httpx.post(f"{self.issuer}/token", auth=(client_id, secret), timeout=10,
                            data={"grant_type": "authorization_code", "code": query["code"][0],
                                  "redirect_uri": REDIRECT, **extra})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def refresh(self, refresh_token: str, *, client_id: str = CLIENT_ID,
                **extra: str) -> httpx.Response:
        """The refresh grant as any client sends it (``resource=…``, ``scope=…``)."""
        secret = CLIENT_SECRET if client_id == CLIENT_ID else f"{client_id}-secret"
        return httpx.post(f"{self.issuer}/token", auth=(client_id, secret), timeout=10,
                          data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                **extra})

    def active(self, access_token: str) -> bool:
        """RFC 7662 introspection at the provider: is this access token valid now?"""
        answer = httpx.post(f"{self.issuer}/introspect", data={"token": access_token},
                            auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
        return bool(answer.json().get("active"))


def _allow_posix_properties(db: sqlite3.Connection) -> None:
    """Let the database user backend keep uidNumber, gidNumber and groups (a list)."""
    row = db.execute("SELECT gumi_parameters FROM g_user_module_instance "
                     "WHERE gumi_name = 'database'").fetchone()
    parameters = json.loads(row[0])
    for name, _ in POSIX_CLAIMS:
        parameters["data-format"][name] = {"multiple": name == "groups", "read": True,
                                           "write": True, "profile-read": True,
                                           "profile-write": False}
    db.execute("UPDATE g_user_module_instance SET gumi_parameters = ? WHERE gumi_name = "
               "'database'", (json.dumps(parameters),))


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
