"""JupyterHub config of the integration tests: the demo's config with short profiles."""

import os
from pathlib import Path
from typing import Any

from services.demo.hubconfig import OidcClient, UserIdentity, configure

c = get_config()  # type: ignore[name-defined]  # noqa: F821

TEST_PROFILES: list[dict[str, Any]] = [
    {"display_name": "Fifteen seconds", "slug": "fifteen", "walltime": "15s"},
    {"display_name": "Twenty seconds", "slug": "twenty", "walltime": "20s"},
    {"display_name": "Ten seconds", "slug": "ten", "walltime": "10s"},
    {"display_name": "One minute", "slug": "minute", "walltime": "60s",
     "kubespawner_override": {"mem_limit": "3G"}},
    {"display_name": "Long", "slug": "long", "walltime": "12h", "default": True,
     "disk_limit": "2G", "kubespawner_override": {"mem_limit": "3G", "cpu_limit": 1.5}},
    {"display_name": "Unlimited", "slug": "unlimited", "walltime": "none"},
    # The idle stop (tests/test_idle_stop.py): 40 s without activity, no walltime.
    {"display_name": "Idle forty seconds", "slug": "idle", "walltime": "none", "idle": "40s"},
    # Only for some users (tests/test_profile_access.py): a role, or a group.
    {"display_name": "A100 20 GB", "slug": "a100", "walltime": "1h",
     "required_role": "a100-20g", "kubespawner_override": {"cpu_limit": 8}},
    {"display_name": "Bio large", "slug": "bio-large", "walltime": "2h",
     "required_group": "bio", "kubespawner_override": {"mem_limit": "6G"}},
]

def oidc_client() -> OidcClient | None:
    issuer = os.environ.get("TEST_OIDC_ISSUER")
    if not issuer:
        return None
    if os.environ.get("TEST_OIDC_KIND") == "glewlwyd":
        # The login may ask for more scopes, and (RFC 8707) for tokens for more resources:
        # glewlwyd takes several resources comma-separated in one parameter.
        resources = os.environ.get("TEST_OIDC_RESOURCES")
        return OidcClient(issuer, f"{issuer}/auth", f"{issuer}/token", f"{issuer}/userinfo",
                          client_secret="glewlwyd-client-secret",
                          scope=tuple(os.environ.get("TEST_OIDC_SCOPES", "openid").split()),
                          # glewlwyd insists on a nonce, which OAuthenticator does not send
                          authorize_params=(("nonce", "test-only-nonce"),
                                            *((("resource", resources),) if resources else ())))
    return OidcClient.oidc_provider_mock(issuer)


backstop = None
if os.environ.get("TEST_BACKSTOP_PORT"):
    backstop = {"WALLTIME_INTERVAL": "2s", "WALLTIME_GRACE": "3s",
                "WALLTIME_PORT": os.environ["TEST_BACKSTOP_PORT"]}

identity = None
if os.environ.get("TEST_STORAGE_FILE"):
    identity = UserIdentity(group_gids=os.environ.get("TEST_GROUP_GIDS", ""),
                            storage_file=Path(os.environ["TEST_STORAGE_FILE"]))

configure(
    c,
    state_dir=Path(os.environ["TEST_HUB_STATE"]),
    port=int(os.environ["TEST_HUB_PORT"]),
    hub_port=int(os.environ["TEST_HUB_API_PORT"]),
    proxy_api_port=int(os.environ["TEST_PROXY_API_PORT"]),
    profiles=TEST_PROFILES,
    backstop=backstop,
    services=[{"name": "test-admin", "api_token": os.environ["TEST_ADMIN_TOKEN"]}],
    roles=[{"name": "admin", "services": ["test-admin"]},
           {"name": "a100-20g", "scopes": [], "users": ["gpu-user"]}],
    oidc=oidc_client(),
    identity=identity,
)
c.Sidecars.walltime_warn = "10s,5s"
c.Sidecars.walltime_token_margin = "1m"
c.Sidecars.idle_warn = "25s,10s"
c.Sidecars.activity_interval = "5s"
if os.environ.get("TEST_LXCFS_DIR"):  # tests/test_lxcfs.py: LXCFS mounted there
    c.Sidecars.lxcfs = os.environ["TEST_LXCFS_DIR"]
c.JupyterHub.log_level = "DEBUG" if os.environ.get("TEST_HUB_DEBUG") else "INFO"

if os.environ.get("TEST_OIDC_KIND") == "glewlwyd":
    # A provider that rotates refresh tokens and issues 10 s access tokens.
    c.Sidecars.tokenhelper_write_back = True
    c.Sidecars.tokenhelper_min_valid = "2s"
