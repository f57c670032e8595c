"""The demo's JupyterHub config (``jupyterhub -f``); paths and ports come from the launcher."""

import os
from pathlib import Path

from services.demo.hubconfig import OidcClient, UserIdentity, configure

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by JupyterHub

configure(
    c,
    state_dir=Path(os.environ["SIDECARS_DEMO_DIR"]),
    port=int(os.environ.get("SIDECARS_DEMO_PORT", "8000")),
    hub_port=int(os.environ.get("SIDECARS_DEMO_HUB_PORT", "8081")),
    proxy_api_port=int(os.environ.get("SIDECARS_DEMO_PROXY_API_PORT", "8001")),
    backstop={"WALLTIME_INTERVAL": "30s", "WALLTIME_GRACE": "30s",
              "WALLTIME_PORT": os.environ.get("SIDECARS_DEMO_BACKSTOP_PORT", "8766")},
    metrics_port=int(os.environ.get("SIDECARS_DEMO_METRICS_PORT", "8768")),
    cleanup_servers=True,  # Ctrl-C on the demo leaves no process behind
    oidc=OidcClient.oidc_provider_mock(os.environ["SIDECARS_DEMO_OIDC_ISSUER"])
    if os.environ.get("SIDECARS_DEMO_OIDC_ISSUER") else None,
    # Each user's notebook runs as their uid/gids from the login's claims (as root), with the
    # folders of the storage definition kubepie serves too.
    identity=UserIdentity(os.environ["SIDECARS_DEMO_GROUP_GIDS"],
                          Path(os.environ["SIDECARS_DEMO_STORAGE_FILE"]))
    if os.environ.get("SIDECARS_DEMO_STORAGE_FILE") else None,
)
