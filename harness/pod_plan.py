"""Alice's server as the pre-spawn hook plans it (walltime, tokenhelper, her own identity and
folders), with credentials whose strings a test can look for in whatever a pod carries."""

from __future__ import annotations

from datetime import datetime

from services.hub.hooks import add_tokenhelper_sidecar, add_walltime, describe_for_metrics
from services.hub.plan import SidecarPlan, UserSession
from services.identity.claims import ClaimMapping
from services.identity.nss import entries_for
from services.storage.definition import StorageDefinition

TOKEN = "0123456789abcdef0123456789abcdef"
HELPER_TOKEN = "helper-token-fedcba9876543210"
CLIENT_SECRET = "client-secret-0011223344"
NOTEBOOK_TOKEN = "notebook-token-aabbccddeeff"
CREDENTIALS = (TOKEN, HELPER_TOKEN, CLIENT_SECRET, NOTEBOOK_TOKEN)

# KubeSpawner loads a kube config when created; this one points nowhere and is never used.
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: jhub}}]
current-context: none
"""
STORAGE = StorageDefinition.parse({
    "volumes": [{"name": "homes", "nfs": {"server": "nfs.example.org", "path": "/export/home"}},
                {"name": "groups", "nfs": {"server": "nfs.example.org",
                                           "path": "/export/groups"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "beamline-data"}}],
    "mounts": [{"name": "home", "volume": "homes", "subPath": "{username}",
                "path": "/home/{username}"},
               {"name": "data", "volume": "data", "readOnly": True}],
    "groupMounts": {"volume": "groups", "subPath": "{group}"}})
MAPPING = ClaimMapping(group_gids={"xray": 5000})
ALICE = MAPPING.identity({"preferred_username": "alice", "uidNumber": 2101, "gidNumber": 2101,
                          "groups": "xray,other"})

STARTED = datetime(2026, 11, 22, 10, 0, 0)  # the hub's database keeps naive UTC


def full_plan(tokenhelper: bool = True, session: bool = True) -> SidecarPlan:
    """What the pre-spawn hook plans for alice: walltime, tokenhelper, her own identity."""
    plan = SidecarPlan()
    add_walltime(plan, api_url="http://hub:8081/hub/api", user="alice", server_name="gpu",
                 limit=1800, warn="10m,1m", token=TOKEN, port=8765)
    describe_for_metrics(plan, {"display_name": "A100 10G", "slug": "a100-10g"}, 1800,
                         STARTED)
    if tokenhelper:
        plan.secrets["client-secret"] = CLIENT_SECRET
        add_tokenhelper_sidecar(
            plan, api_url="http://hub:8081/hub/api", user="alice", token=HELPER_TOKEN,
            issuer="https://idp.example.org/realms/facility", client_id="jupyterhub",
            run_dir="/run/sidecars", uid=2101, port=8767, min_valid="60s", write_back=False)
    if session:
        folders = STORAGE.folders(ALICE)
        plan.session = UserSession(ALICE, entries_for(ALICE, MAPPING.group_gids,
                                                      "/home/alice"),
                                   STORAGE, folders, "/home/alice")
    return plan
