"""JupyterHub configuration for one machine: the demo and the tests share it.

Real JupyterHub, real configurable-http-proxy, the production hooks, and the local spawner
that runs the sidecars as processes.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.hub.hooks import install
from services.hub.local_spawner import LocalSidecarSpawner

REPO_ROOT = Path(__file__).resolve().parents[2]

DEMO_PROFILES: list[dict[str, Any]] = [
    {"display_name": "Quick look", "slug": "quick", "walltime": "2m",
     "description": "Two minutes: watch the countdown and the stop.",
     "kubespawner_override": {"mem_limit": "1G", "cpu_limit": 1}},
    {"display_name": "Short session", "slug": "short", "walltime": "30m", "default": True,
     "description": "Half an hour of analysis.",
     "kubespawner_override": {"mem_limit": "2G", "cpu_limit": 2}},
    {"display_name": "Long session", "slug": "long", "walltime": "12h",
     "description": "A working day.",
     "kubespawner_override": {"mem_limit": "4G", "cpu_limit": 2}},
]


def proxy_command() -> str:
    """configurable-http-proxy from PATH, else the repository's node_modules."""
    found = shutil.which("configurable-http-proxy")
    local = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
    if found:
        return found
    if local.exists():
        return str(local)
    raise SystemExit("configurable-http-proxy not found: run `make setup` (npm ci) first")


@dataclass(frozen=True)
class OidcClient:
    """Where the hub logs users in: the provider's endpoints and the hub's client there."""

    issuer: str
    authorize_url: str
    token_url: str
    userdata_url: str
    client_id: str = "jupyterhub"
    client_secret: str = "demo-client-secret"  # noqa: S105 - the local demo provider's
    scope: tuple[str, ...] = ("openid", "profile")
    authorize_params: tuple[tuple[str, str], ...] = ()  # extra query parameters, e.g. nonce

    @classmethod
    def oidc_provider_mock(cls, issuer: str) -> OidcClient:
        return cls(issuer, f"{issuer}/oauth2/authorize", f"{issuer}/oauth2/token",
                   f"{issuer}/userinfo")


@dataclass(frozen=True)
class UserIdentity:
    """The notebook as the user's own uid/gids (claims from the login), with these folders."""

    group_gids: str                 # e.g. "xray=5000,bio=5001"
    storage_file: Path              # the storage definition, the same file as kubepie's


def run_as_users(c: Any, identity: UserIdentity) -> None:
    c.Sidecars.identity_from_claims = True
    c.Sidecars.group_gids = identity.group_gids
    c.Sidecars.storage_file = str(identity.storage_file)


def use_oidc_login(c: Any, client: OidcClient, port: int) -> None:
    """Log in through an OIDC provider, keep its tokens in auth_state, add the tokenhelper.

    The hub needs JUPYTERHUB_CRYPT_KEY in its environment to encrypt auth_state.
    """
    c.JupyterHub.authenticator_class = "generic-oauth"
    oauth = c.GenericOAuthenticator
    oauth.client_id = client.client_id
    oauth.client_secret = client.client_secret
    oauth.oauth_callback_url = f"http://127.0.0.1:{port}/hub/oauth_callback"
    oauth.authorize_url = client.authorize_url
    oauth.token_url = client.token_url
    oauth.userdata_url = client.userdata_url
    oauth.scope = list(client.scope)
    if client.authorize_params:
        oauth.extra_authorize_params = dict(client.authorize_params)
    oauth.username_claim = "sub"
    oauth.enable_auth_state = True
    oauth.allow_all = True
    c.Sidecars.tokenhelper_enabled = True
    c.Sidecars.tokenhelper_oidc_issuer = client.issuer


def configure(
    c: Any,
    *,
    state_dir: Path,
    port: int = 8000,
    hub_port: int = 8081,
    proxy_api_port: int = 8001,
    profiles: list[dict[str, Any]] | None = None,
    backstop: dict[str, str] | None = None,
    services: list[dict[str, Any]] | None = None,
    roles: list[dict[str, Any]] | None = None,
    cleanup_servers: bool = False,
    oidc: OidcClient | None = None,
    metrics_port: int | None = None,
    identity: UserIdentity | None = None,
) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = hub_port
    c.JupyterHub.db_url = f"sqlite:///{state_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state_dir / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.command = [proxy_command()]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(state_dir / "proxy.pid")
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allow_all = True
    c.JupyterHub.allow_named_servers = True
    # False: servers (and their sidecars) outlive a hub restart, as pods do on Kubernetes.
    c.JupyterHub.cleanup_servers = cleanup_servers
    c.JupyterHub.spawner_class = LocalSidecarSpawner
    c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 60
    c.LocalProcessSpawner.interrupt_timeout = 5
    c.LocalProcessSpawner.term_timeout = 3
    c.LocalSidecarSpawner.home_dir_template = str(state_dir / "home" / "{username}")
    c.LocalSidecarSpawner.profile_list = profiles if profiles is not None else DEMO_PROFILES
    c.Sidecars.walltime_default = "8h"
    install(c)

    all_services = list(services or [])
    all_roles = list(roles or [])
    if identity:
        run_as_users(c, identity)
    if oidc:
        use_oidc_login(c, oidc, port)
        all_services.append({"name": "tokenhelper"})
        # admin:users only matters with c.Sidecars.tokenhelper_write_back; tokens are minted
        # per server with the subset the settings need, filtered to one user.
        all_roles.append({"name": "tokenhelper",
                          "scopes": ["admin:auth_state", "read:users:name", "admin:users"],
                          "services": ["tokenhelper"]})
    if backstop is not None:
        all_services.append({
            "name": "walltime-backstop",
            "command": [sys.executable, "-m", "services", "walltime", "--all-servers"],
            "environment": backstop,
        })
        all_roles.append({
            "name": "walltime-backstop",
            "scopes": ["list:users", "read:servers", "delete:servers"],
            "services": ["walltime-backstop"],
        })
    if metrics_port is not None:
        # The node agent, local source: it needs no hub token and no role.
        all_services.append({
            "name": "metrics",
            "command": [sys.executable, "-m", "services", "metrics", "--source", "local",
                        "--host", "127.0.0.1", "--port", str(metrics_port)],
        })
    c.JupyterHub.services = all_services
    c.JupyterHub.load_roles = all_roles
