"""The contract between the hub hooks and the processes of a user's server.

Everything both sides must agree on lives here, once: the environment variables the notebook
and the sidecars get, the files and folders they find, the ports they listen on, the pod
annotations the metrics agent reads, the keys of the per-server Secret. The hooks write these
names; the sidecars, the status API and the agent read them. Nothing else is shared between
``services/hub`` and the services it equips.
"""

from __future__ import annotations

from typing import Final

# -- what the notebook's environment carries -------------------------------------------------
WALLTIME_URL_ENV: Final = "JUPYTERHUB_SIDECARS_WALLTIME_URL"    # the walltime sidecar's /status
TOKEN_URL_ENV: Final = "JUPYTERHUB_SIDECARS_TOKEN_URL"          # the tokenhelper's /token
PROFILE_ENV: Final = "JUPYTERHUB_SIDECARS_PROFILE"              # the chosen profile's slug
GPU_LIMIT_ENV: Final = "JUPYTERHUB_SIDECARS_GPU_MEMORY_LIMIT"   # a profile's gpu_memory
USAGE_SCOPE_ENV: Final = "JUPYTERHUB_SIDECARS_USAGE_SCOPE"      # "process-tree" locally
DISK_LIMIT_ENV: Final = "JUPYTERHUB_SIDECARS_DISK_LIMIT"        # a profile's disk_limit
DISK_PATH_ENV: Final = "JUPYTERHUB_SIDECARS_DISK_PATH"          # the folder counted; $HOME
ARC_CERT_ENV: Final = "JUPYTERHUB_SIDECARS_ARC_CERT"
ARC_KEY_ENV: Final = "JUPYTERHUB_SIDECARS_ARC_KEY"
BEARER_TOKEN_FILE_ENV: Final = "BEARER_TOKEN_FILE"              # WLCG bearer token discovery
OIDC_SOCK_ENV: Final = "OIDC_SOCK"                              # oidc-agent clients

# -- the folder the notebook shares with the tokenhelper (an in-memory emptyDir) -----------
RUN_DIR: Final = "/run/sidecars"
AGENT_SOCKET_NAME: Final = "oidc-agent.sock"
ARC_CERT_NAME: Final = "arc-placeholder-cert.pem"
ARC_KEY_NAME: Final = "arc-placeholder-key.pem"


def bearer_token_name(uid: int) -> str:
    """``bt_u<uid>``: where WLCG token discovery looks in ``$XDG_RUNTIME_DIR``."""
    return f"bt_u{uid}"


# -- pod-local ports ------------------------------------------------------------------------
WALLTIME_PORT: Final = 8765
TOKENHELPER_PORT: Final = 8767

# -- pod annotations the metrics node agent reads (sidecars listen on the pod's loopback) ---
PROFILE_ANNOTATION: Final = "jupyterhub-sidecars/profile"
WALLTIME_LIMIT_ANNOTATION: Final = "jupyterhub-sidecars/walltime-limit-seconds"
WALLTIME_DEADLINE_ANNOTATION: Final = "jupyterhub-sidecars/walltime-deadline"

# -- the server's user_options key the walltime backstop reads (the hook always writes it) --
WALLTIME_USER_OPTION: Final = "walltime_seconds"
IDLE_USER_OPTION: Final = "idle_seconds"  # the idle limit, for the backstop
# How often jupyterhub-singleuser tells the hub the server's last activity (its default: 300 s);
# shorter where an idle limit is set, so the idle stop sees activity within this time.
ACTIVITY_INTERVAL_ENV: Final = "JUPYTERHUB_ACTIVITY_INTERVAL"

# -- credentials: one Secret per server, each key mounted into the one container needing it -
SECRET_MOUNT_ROOT: Final = "/etc/jupyterhub-sidecars"  # <root>/<container>/<key>
WALLTIME_TOKEN_KEY: Final = "walltime-token"          # → the walltime container
TOKENHELPER_TOKEN_KEY: Final = "tokenhelper-token"    # → the tokenhelper container
NOTEBOOK_TOKEN_KEY: Final = "jupyterhub-api-token"    # → the notebook's JUPYTERHUB_API_TOKEN
CLIENT_SECRET_FILE_NAME: Final = "client-secret"      # the operator's OIDC client secret

# -- Prometheus: every series of the suite starts with this (the dashboard and alerts rely on it)
METRIC_PREFIX: Final = "jupyterhub_sidecars"
