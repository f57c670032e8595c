"""``c.Sidecars``: how the hooks equip each server (values.yaml ``hub.config.Sidecars``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Enum, Integer, List, Unicode, Union
from traitlets.config import Configurable

from services.contract import RUN_DIR, TOKENHELPER_PORT, WALLTIME_PORT
from services.hub.plan import LXCFS_FILES, ContainerSettings, Lxcfs
from services.identity.claims import ClaimMapping
from services.identity.settings import DEFAULTS, HELP, mapping_from
from services.storage.definition import StorageDefinition


class Sidecars(Configurable):
    """``c.Sidecars.*``: how the hooks equip each server."""

    walltime_default = Unicode(
        "", config=True,
        help="Walltime for servers whose profile sets none (90s, 30m, 12h, 1d); empty = no limit.")
    walltime_warn = Unicode(
        "10m,1m", config=True, help="Warn the user this long before the end (comma-separated).")
    walltime_token_margin = Unicode(
        "10m", config=True,
        help="The walltime token expires this long after the limit (covers slow stops).")
    walltime_port = Integer(
        WALLTIME_PORT, config=True, help="Pod-local port of the walltime sidecar.")
    image = Unicode(
        "ghcr.io/jupyterhub-sidecars/sidecars:0.1.0", config=True,
        help="Image of the sidecar containers (KubeSpawner only).")
    image_pull_policy = Unicode("IfNotPresent", config=True, help="imagePullPolicy of sidecars.")
    run_as_user = Integer(65534, config=True, help="UID the sidecar containers run as.")
    tokenhelper_enabled = Bool(
        False, config=True,
        help="Add the tokenhelper: access tokens from auth_state for the notebook.")
    tokenhelper_service = Unicode(
        "tokenhelper", config=True,
        help="JupyterHub service that owns the tokenhelper tokens (role: admin:auth_state, "
             "read:users:name; plus admin:users with write-back).")
    tokenhelper_oidc_issuer = Unicode(
        "", config=True, help="OIDC issuer URL the tokenhelper refreshes at.")
    tokenhelper_client_secret = Unicode(
        "", config=True,
        help="Kubernetes Secret with the OIDC client secret for the tokenhelper, as "
             "name:key (e.g. oidc-client:client-secret); empty: the authenticator's "
             "client_secret is put into each server's own Secret.")
    tokenhelper_write_back = Bool(
        False, config=True,
        help="Let the tokenhelper write rotated refresh tokens to auth_state (admin:users).")
    idle_default = Unicode(
        "", config=True,
        help="Stop servers after this long without activity when their profile sets no "
             "`idle` (e.g. 6h); empty: no idle stop.")
    idle_warn = Unicode(
        "10m,1m", config=True,
        help="Warn this long before an idle stop (the status bar and a notification).")
    activity_interval = Unicode(
        "30s", config=True,
        help="Where an idle limit is set, how often the server reports its activity to the "
             "hub (JUPYTERHUB_ACTIVITY_INTERVAL; jupyterhub-singleuser's default is 5 min).")
    compute_instances = Dict(
        {}, config=True,
        help="Compute instances by key (cpu/mem limits and guarantees, gpu_resource_name, "
             "gpu_limit, gpu_memory, node_type or node_selector, walltime, idle, "
             "required_role, required_group): with `profiles`, builds KubeSpawner's "
             "profile_list (services/hub/compute_profiles.py).")
    profiles: List[dict[str, Any]] = List(
        [], config=True,
        help="Profiles naming their allowed_compute_instances (and profile_options such as "
             "images); one spawn-page entry per allowed instance. Empty: profile_list as set.")
    tokenhelper_audience_parameter = Enum(
        ["resource", "audience"], "resource", config=True,
        help="How the tokenhelper asks the provider for a token meant for one audience: "
             "resource (RFC 8707; glewlwyd, Authlete) or audience (INDIGO IAM, Auth0).")
    tokenhelper_min_valid = Unicode(
        "60s", config=True, help="Refresh when the access token has less than this left.")
    tokenhelper_port = Integer(TOKENHELPER_PORT, config=True,
                               help="Pod-local port of the tokenhelper.")
    tokenhelper_metrics_port = Integer(
        0, config=True,
        help="A port of the pod serving the tokenhelper's /metrics alone (for the token alerts "
             "in deploy/metrics/prometheus), with prometheus.io/* pod annotations; 0: none. "
             "Allow your Prometheus in singleuser.networkPolicy.ingress.")
    run_dir = Unicode(
        RUN_DIR, config=True,
        help="Shared folder (emptyDir) of the notebook and the sidecars (KubeSpawner).")
    resources = Dict(
        {"requests": {"cpu": "5m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        config=True, help="Kubernetes resources of each sidecar container.")
    # -- the user's own identity --------------------------------------------------------------
    identity_from_claims = Bool(
        False, config=True,
        help="Run the notebook as the user's uid, gid and groups from the login's claims "
             "(auth_state; the same mapping as kubepie), with passwd/group entries and the "
             "storage folders; a login whose claims give no usable identity cannot spawn.")
    username_claim = Unicode(DEFAULTS["username_claim"], config=True,
                             help=HELP["username_claim"] + " (as KUBEPIE_USERNAME_CLAIM)")
    uid_claim = Unicode(DEFAULTS["uid_claim"], config=True,
                        help=HELP["uid_claim"] + " (as KUBEPIE_UID_CLAIM)")
    gid_claim = Unicode(DEFAULTS["gid_claim"], config=True,
                        help=HELP["gid_claim"] + " (as KUBEPIE_GID_CLAIM)")
    groups_claim = Unicode(DEFAULTS["groups_claim"], config=True,
                           help=HELP["groups_claim"] + " (as KUBEPIE_GROUPS_CLAIM)")
    group_gids = Union([Dict(), Unicode()], default_value={}, config=True,
                       help=HELP["group_gids"] + "; a mapping or the same string as "
                                                 "KUBEPIE_GROUP_GIDS")
    id_range = Unicode(DEFAULTS["id_range"], config=True,
                       help=HELP["id_range"] + " (as KUBEPIE_ID_RANGE)")
    storage = Dict(
        {}, config=True,
        help="The storage definition (volumes, mounts, groupMounts): the same document as "
             "kubepie's KUBEPIE_STORAGE_FILE; see docs/storage.md.")
    storage_file = Unicode(
        "", config=True, help="A YAML file with the storage definition (instead of storage).")
    nss_shell = Unicode("/bin/bash", config=True,
                        help="Login shell in the user's passwd entry.")
    lxcfs = Unicode(
        "", config=True,
        help="Where LXCFS is mounted on the nodes (deploy/lxcfs: /var/lib/lxcfs); set, its "
             "views of /proc are mounted into the notebook so free, top and htop show the "
             "container's limits. Empty: off.")
    lxcfs_files = List(
        Unicode(), default_value=list(LXCFS_FILES), config=True,
        help="The files under the LXCFS folder mounted over the notebook's own.")

    def lxcfs_plan(self) -> Lxcfs | None:
        if not self.lxcfs:
            return None
        if not self.lxcfs.startswith("/"):
            raise ValueError(f"c.Sidecars.lxcfs {self.lxcfs!r}: give the absolute folder "
                             "where LXCFS is mounted on the nodes, e.g. /var/lib/lxcfs")
        files = tuple(f.strip("/") for f in self.lxcfs_files)
        bad = [f for f in files if ".." in f.split("/") or not f]
        if bad:
            raise ValueError(f"c.Sidecars.lxcfs_files: {bad[0]!r} is not a file below the "
                             "LXCFS folder")
        return Lxcfs(self.lxcfs.rstrip("/"), files)

    def container_settings(self) -> ContainerSettings:
        return ContainerSettings(self.image, self.image_pull_policy, dict(self.resources),
                                 self.run_as_user)

    def claim_mapping(self) -> ClaimMapping:
        """The checked mapping; a ValueError names the bad setting."""
        return mapping_from(self.username_claim, self.uid_claim, self.gid_claim,
                            self.groups_claim, self.group_gids, self.id_range,
                            prefix="c.Sidecars.")

    def storage_definition(self) -> StorageDefinition | None:
        if self.storage_file:
            return StorageDefinition.load(Path(self.storage_file))
        if self.storage:
            return StorageDefinition.parse(dict(self.storage), "c.Sidecars.storage")
        return None
