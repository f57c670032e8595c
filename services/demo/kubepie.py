"""The demo's kubepie: the gateway with the local backend on the demo's OIDC provider, each
user's home (the same folder JupyterLab uses) served over WebDAV, and a fresh access key for
alice so the banner can show a working rclone command."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path

from services.identity.claims import ClaimMapping
from services.kubepie.gateway.accesskeys import AccessKeys, SqliteKeyStore

CLIENT_ID, CLIENT_SECRET = "kubepie", "demo-kubepie-secret"
GROUP_GIDS = {"xray": 5000, "bio": 5001}


def prepare_homes(state: Path, users: list[dict[str, object]]) -> None:
    """Homes exist before anyone logs in; as root they belong to the users' uids (and the
    state folder can be passed through, not listed, by them)."""
    if os.geteuid() == 0:
        state.chmod(0o711)
        (state / "home").mkdir(exist_ok=True)
        (state / "home").chmod(0o755)
    for user in users:
        home = state / "home" / str(user["sub"])
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(home, int(str(user["uidNumber"])), int(str(user["gidNumber"])))


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


def start_gateway(bin_dir: Path, state: Path, issuer: str, port: int) -> subprocess.Popen[bytes]:
    secret_file = state / "kubepie-session-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    env = {**os.environ,
           "KUBEPIE_OIDC_ISSUER": issuer, "KUBEPIE_CLIENT_ID": CLIENT_ID,
           "KUBEPIE_CLIENT_SECRET": CLIENT_SECRET, "KUBEPIE_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "KUBEPIE_SESSION_SECRET_FILE": str(secret_file), "KUBEPIE_PORT": str(port),
           "KUBEPIE_KEY_STORE": str(state / "kubepie-keys.sqlite"),
           "KUBEPIE_MOUNTS": f"home={state}/home/{{username}}",
           "KUBEPIE_GROUP_GIDS": ",".join(f"{g}={n}" for g, n in GROUP_GIDS.items()),
           # The notebook's access tokens (tokenhelper) are opaque with this provider.
           "KUBEPIE_OPAQUE_TOKENS": "userinfo", "KUBEPIE_AUDIENCES": "kubepie,jupyterhub"}
    log = (state / "kubepie-gateway.log").open("ab")
    return subprocess.Popen([str(bin_dir / "jupyterhub-sidecars"), "kubepie", "gateway"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
