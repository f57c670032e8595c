"""``jupyterhub-sidecars demo``: start a real JupyterHub with the sidecars on this machine."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.demo.children import stop_with_parent
from services.demo.hubconfig import REPO_ROOT, proxy_command
from services.demo.kubepie import fresh_key, group_gids, prepare_homes, start_gateway

CONFIG = Path(__file__).with_name("jupyterhub_config.py")
GATEWAY_OFFSET = 780  # kubepie's gateway: 8780 next to the hub's 8000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIDECARS_DEMO_PORT",
                                                                        8000)),
                        help="public port of the hub (default 8000) [env SIDECARS_DEMO_PORT]")
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("SIDECARS_DEMO_DIR",
                                                                         REPO_ROOT / ".demo")),
                        help="state folder (database, homes) [env SIDECARS_DEMO_DIR]")


DEMO_USERS = [
    {"sub": "alice", "preferred_username": "alice", "uidNumber": 1001, "gidNumber": 1001,
     "groups": ["xray"]},
    {"sub": "bob", "preferred_username": "bob", "uidNumber": 1002, "gidNumber": 1002,
     "groups": ["xray", "bio"]},
]


def start_provider(bin_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """oidc-provider-mock (PyPI): authorization code, refresh tokens, custom claims."""
    command = [str(bin_dir / "oidc-provider-mock"), "-p", str(port), "-e", "300"]
    for user in DEMO_USERS:
        command += ["--user-claims", json.dumps(user)]
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            preexec_fn=stop_with_parent)


def crypt_key(state: Path) -> str:
    """auth_state is encrypted; keep the key with the demo's database."""
    path = state / "crypt_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    state = args.dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    provider_port = args.port + 1400
    provider = start_provider(bin_dir, provider_port, state / "oidc-provider.log")
    storage = prepare_homes(state, DEMO_USERS)
    gateway = start_gateway(bin_dir, state, f"http://127.0.0.1:{provider_port}",
                            args.port + GATEWAY_OFFSET, storage)
    try:
        return _run_hub(args, state, bin_dir, provider_port, storage)
    finally:
        for process in (gateway, provider):
            process.terminate()
            process.wait(15)


def _run_hub(args: argparse.Namespace, state: Path, bin_dir: Path, provider_port: int,
             storage: Path) -> int:
    issuer = f"http://127.0.0.1:{provider_port}"
    if not _wait_until_up(None, f"{issuer}/.well-known/openid-configuration"):
        print(f"the OIDC provider did not start; see {state / 'oidc-provider.log'}")
        return 1
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(proxy_command()).parent}:{os.environ.get('PATH', '')}",
        "SIDECARS_DEMO_DIR": str(state),
        "SIDECARS_DEMO_PORT": str(args.port),
        "SIDECARS_DEMO_HUB_PORT": str(args.port + 81),
        "SIDECARS_DEMO_PROXY_API_PORT": str(args.port + 1),
        "SIDECARS_DEMO_BACKSTOP_PORT": str(args.port + 766),
        "SIDECARS_DEMO_METRICS_PORT": str(args.port + 768),
        "SIDECARS_DEMO_OIDC_ISSUER": issuer,
        "SIDECARS_DEMO_STORAGE_FILE": str(storage),
        "SIDECARS_DEMO_GROUP_GIDS": group_gids(),
        "JUPYTERHUB_CRYPT_KEY": crypt_key(state),
    }
    # The hub gets a process group of its own, so that Ctrl-C (sent by the terminal to the whole
    # foreground group) reaches it once, forwarded from here, never twice: a second SIGINT in
    # the middle of its shutdown kills it half-way.
    hub = subprocess.Popen([str(bin_dir / "jupyterhub"), "-f", str(CONFIG)], cwd=state, env=env,
                           process_group=0, preexec_fn=stop_with_parent)
    asked: list[int] = []

    def forward(number: int, _: object) -> None:
        asked.append(number)
        if hub.poll() is None:
            hub.send_signal(number)

    # Handlers of our own, whatever this process inherited: a shell that starts a command in
    # the background (``make demo &``, CI runners) sets SIGINT to "ignore", and a Ctrl-C or
    # kill -INT would then never reach the hub.
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    gateway_url = f"http://127.0.0.1:{args.port + GATEWAY_OFFSET}"
    if _wait_until_up(hub, f"http://127.0.0.1:{args.port + 81}/hub/api/") and \
            _wait_until_up(None, f"{gateway_url}/healthz", stop=asked):
        key_id, secret = fresh_key(state, DEMO_USERS[0])
        print(_banner(args.port, state, issuer) + _kubepie_banner(gateway_url, key_id,
                                                                  secret, state),
              flush=True)
    return _exit_status(hub.wait(), asked_to_stop=bool(asked))


def _exit_status(returncode: int, asked_to_stop: bool = False) -> int:
    """A shell's exit status: 0 for a hub that stopped because it was asked to, 128 + N for one
    killed by signal N (Popen says -N, which ``sys.exit`` would turn into 256 - N)."""
    if asked_to_stop and returncode in (-signal.SIGINT, -signal.SIGTERM):
        return 0
    return 128 - returncode if returncode < 0 else returncode


def _wait_until_up(process: subprocess.Popen[bytes] | None, url: str,
                   timeout: float = 60, stop: list[int] | None = None) -> bool:
    """Whether ``url`` answers 200 in time; False as soon as ``process`` ends or a stop
    signal arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None) \
            and not stop:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    return False


def _kubepie_banner(url: str, key_id: str, secret: str, state: Path) -> str:
    return f"""
 kubepie: your files over WebDAV, each user's server running with their own uid
 5. A fresh access key for alice (secret shown once; make more at {url}/_kubepie/keys):
      key id {key_id}   secret {secret}
    List, copy, or mount alice's home with rclone:
      export RCLONE_WEBDAV_URL={url}/ RCLONE_WEBDAV_VENDOR=other
      export RCLONE_WEBDAV_USER={key_id} RCLONE_WEBDAV_PASS=$(rclone obscure {secret})
      rclone lsf :webdav:home/
      rclone copy ./results :webdav:home/results
      mkdir -p ~/alice-files && rclone mount :webdav:home/ ~/alice-files --vfs-cache-mode writes
 6. Or sign in in the browser at {url}/home/ (as alice or bob), or use a token in JupyterLab:
      curl -H "Authorization: Bearer $(cat $BEARER_TOKEN_FILE)" {url}/home/
    Gateway log: {state / 'kubepie-gateway.log'}

 Hub and sidecar logs (JSON) are printed below.
================================================================================
"""


def _banner(port: int, state: Path, issuer: str) -> str:
    url = f"http://127.0.0.1:{port}"
    return f"""
================================================================================
 jupyterhub-sidecars demo is running (Ctrl-C stops everything)

 1. Open {url}/hub/login (use 127.0.0.1, not localhost) and sign in: the
    local OIDC provider ({issuer}) asks for a subject: type alice or bob.
    Their claims carry uid/gid 1001/1002 and the group xray (gid 5000); the notebook runs
    as that user (when the demo runs as root). Any other name has no uid: the spawn page
    says so and nothing starts.
 2. Pick "Quick look (Limits: 1GB RAM, 1 CPU, 2 min)" and start the server.
    JupyterLab's status bar (bottom left) shows "Mem: … / 1024 MB | Walltime: … / 120 s";
    a notification warns one minute before the end, another when the server stops.
 3. In a JupyterLab terminal:
      id; ls -ld ~ /groups 2>/dev/null; echo $HOME             # you, by name and uid
      jupyterhub-sidecars usage                              # memory, CPU, GPU, walltime
      cat $BEARER_TOKEN_FILE                                 # a fresh access token
      oidc-token demo                                        # via $OIDC_SOCK (oidc-agent-cli)
      curl -s -H "Authorization: Bearer $(cat $BEARER_TOKEN_FILE)" {issuer}/userinfo
    On one machine the sidecars listen on UNIX sockets only you can open (in a pod,
    http://127.0.0.1): $JUPYTERHUB_SIDECARS_WALLTIME_URL is http+unix://<socket>, e.g.
      curl -s --unix-socket $(dirname $BEARER_TOKEN_FILE)/walltime.sock localhost/status
 4. Watch the server stop after two minutes; your files stay in {state}/home/<you>,
    owned by your uid; {state}/groups/xray is shared by alice and bob.

 Operators:
      curl -s http://127.0.0.1:{port + 768}/metrics | grep alice       # usage per server
      curl -s http://127.0.0.1:{port + 768}/usage                      # the same as JSON
      curl -s http://127.0.0.1:{port + 766}/metrics | grep walltime    # hub-wide backstop
"""
