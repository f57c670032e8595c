"""The demo's kubepie: the gateway with the local backend on the demo's OIDC provider, each
user's home (the same folder JupyterLab uses) served over WebDAV, and a fresh access key for
alice so the banner can show a working rclone command."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import yaml

from services.demo.children import stop_with_parent
from services.identity.claims import ClaimMapping
from services.kubepie.gateway.accesskeys import AccessKeys, SqliteKeyStore

CLIENT_ID, CLIENT_SECRET = "kubepie", "demo-kubepie-secret"
GROUP_GIDS = {"xray": 5000, "bio": 5001}


def storage_definition(state: Path) -> dict[str, Any]:
    """The demo's one storage definition (the hub's and kubepie's): each user's home and a
    folder per group, folders of this machine (hostPath volumes)."""
    return {"volumes": [{"name": "homes", "hostPath": {"path": str(state / "home")}},
                        {"name": "groups", "hostPath": {"path": str(state / "groups")}}],
            "mounts": [{"name": "home", "volume": "homes", "subPath": "{username}",
                        "path": "/home/{username}"}],
            "groupMounts": {"volume": "groups", "subPath": "{group}",
                            "path": "/groups/{group}"}}


def prepare_homes(state: Path, users: list[dict[str, object]]) -> Path:
    """Homes and group folders exist before anyone logs in; as root they belong to the
    users' uids and the groups' gids (and the state folder can be passed through, not
    listed, by them). Returns the storage definition's file."""
    if os.geteuid() == 0:
        state.chmod(0o711)
    for folder in ("home", "groups"):
        (state / folder).mkdir(exist_ok=True)
        (state / folder).chmod(0o755)
    for group, gid in GROUP_GIDS.items():
        shared = state / "groups" / group
        shared.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(shared, 0, gid)
            shared.chmod(0o2770)  # members only; new files keep the group
    for user in users:
        home = state / "home" / str(user["sub"])
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(home, int(str(user["uidNumber"])), int(str(user["gidNumber"])))
            home.chmod(0o700)
    path = state / "storage.yaml"
    path.write_text(yaml.safe_dump(storage_definition(state)))
    return path


def group_gids() -> str:
    """``xray=5000,bio=5001``: the same mapping for the hub and the gateway."""
    return ",".join(f"{g}={n}" for g, n in GROUP_GIDS.items())


def fresh_key(state: Path, claims: dict[str, object]) -> tuple[str, str]:
    """An access key for the banner (valid one day), stored like any other."""
    identity = ClaimMapping(group_gids=GROUP_GIDS).identity(claims)

    async def create() -> tuple[str, str]:
        store = SqliteKeyStore(state / "kubepie-keys.sqlite")
        try:
            key, secret = await AccessKeys(store, max_lifetime=86400).create(
                identity, "make demo", 86400)
        finally:
            store.close()
        return key.key_id, secret

    return asyncio.run(create())


def start_gateway(bin_dir: Path, state: Path, issuer: str, port: int,
                  storage_file: Path) -> subprocess.Popen[bytes]:
    secret_file = state / "kubepie-session-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    env = {**os.environ,
           "KUBEPIE_OIDC_ISSUER": issuer, "KUBEPIE_CLIENT_ID": CLIENT_ID,
           "KUBEPIE_CLIENT_SECRET": CLIENT_SECRET, "KUBEPIE_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "KUBEPIE_SESSION_SECRET_FILE": str(secret_file), "KUBEPIE_PORT": str(port),
           "KUBEPIE_KEY_STORE": str(state / "kubepie-keys.sqlite"),
           "KUBEPIE_STORAGE_FILE": str(storage_file), "KUBEPIE_GROUP_GIDS": group_gids(),
           # The notebook's access tokens (tokenhelper) are opaque with this provider.
           "KUBEPIE_OPAQUE_TOKENS": "userinfo"}
    log = (state / "kubepie-gateway.log").open("ab")
    return subprocess.Popen([str(bin_dir / "jupyterhub-sidecars"), "kubepie", "gateway"],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=stop_with_parent)
