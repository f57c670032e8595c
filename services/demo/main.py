"""``jupyterhub-sidecars demo``: start a real JupyterHub with the sidecars on this machine."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.demo.hubconfig import REPO_ROOT, proxy_command

CONFIG = Path(__file__).with_name("jupyterhub_config.py")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIDECARS_DEMO_PORT",
                                                                        8000)),
                        help="public port of the hub (default 8000) [env SIDECARS_DEMO_PORT]")
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("SIDECARS_DEMO_DIR",
                                                                         REPO_ROOT / ".demo")),
                        help="state folder (database, homes) [env SIDECARS_DEMO_DIR]")


def main(args: argparse.Namespace) -> int:
    state = args.dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(proxy_command()).parent}:{os.environ.get('PATH', '')}",
        "SIDECARS_DEMO_DIR": str(state),
        "SIDECARS_DEMO_PORT": str(args.port),
        "SIDECARS_DEMO_HUB_PORT": str(args.port + 81),
        "SIDECARS_DEMO_PROXY_API_PORT": str(args.port + 1),
        "SIDECARS_DEMO_BACKSTOP_PORT": str(args.port + 766),
    }
    hub = subprocess.Popen([str(bin_dir / "jupyterhub"), "-f", str(CONFIG)], cwd=state, env=env)
    signal.signal(signal.SIGTERM, lambda *_: hub.send_signal(signal.SIGTERM))
    try:
        if _wait_until_up(hub, f"http://127.0.0.1:{args.port + 81}/hub/api/"):
            print(_banner(args.port, state), flush=True)
        return hub.wait()
    except KeyboardInterrupt:
        hub.send_signal(signal.SIGINT)
        return hub.wait()


def _wait_until_up(hub: subprocess.Popen[bytes], url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and hub.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    return False


def _banner(port: int, state: Path) -> str:
    url = f"http://127.0.0.1:{port}"
    return f"""
================================================================================
 jupyterhub-sidecars demo is running (Ctrl-C stops everything)

 1. Open {url}/hub/login and sign in with any user name (no password).
 2. Pick "Quick look (time limit 2m)" and start the server.
 3. In a JupyterLab terminal:
      curl -s $JUPYTERHUB_SIDECARS_WALLTIME_URL/status      # the countdown
 4. Watch the server stop after two minutes; your files stay in {state}/home.

 Operators: walltime metrics at
      curl -s http://127.0.0.1:{port + 766}/metrics | grep walltime    # hub-wide backstop
 Hub and sidecar logs (JSON) are printed below.
================================================================================
"""
