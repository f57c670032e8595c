"""`make demo` as a newcomer runs it: the banner, an OIDC login, a session with its sidecars."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness.fileserver import open_folder
from harness.hub import free_demo_port, process_env, wait_sidecar
from harness.oidc import log_in
from harness.tools import REPO, VENV_BIN, require_tool, wait_http
from services.demo.kubepie import fresh_key
from services.demo.main import DEMO_USERS

pytestmark = pytest.mark.slow

def test_demo_starts_logs_in_through_oidc_and_equips_the_server(tmp_path: Path) -> None:
    with open_folder() as state:  # reachable by the users' uids when CI runs as root
        _run_demo(tmp_path, state / "state")


def test_a_killed_demo_takes_its_hub_provider_and_gateway_with_it(tmp_path: Path) -> None:
    """SIGKILL to the demo alone (an OOM kill, a closed terminal's last resort): the hub (in a
    process group of its own), the OIDC provider and the gateway stop too, never linger."""
    with open_folder() as state:
        demo, _ = _start_demo(tmp_path, state / "state", free_demo_port())
        try:
            children = _children(demo.pid)
            assert len(children) == 3, children  # provider, gateway, hub
            demo.kill()
            demo.wait()
            deadline = time.monotonic() + 30
            while (alive := [pid for pid in children if _running(pid)]) and \
                    time.monotonic() < deadline:
                time.sleep(0.2)
            assert not alive, f"outlived the demo: {alive}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for pytest (a child subreaper) to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _start_demo(tmp_path: Path, state: Path, port: int, *,
                ignore_sigint: bool = False) -> tuple[subprocess.Popen[bytes], Path]:
    """The demo, once its banner says it is running; its output file."""
    output = tmp_path / "demo.log"
    env = {**os.environ, "PATH": f"{VENV_BIN}:{REPO / 'node_modules' / '.bin'}:"
                                 f"{os.environ['PATH']}"}
    demo = subprocess.Popen([str(VENV_BIN / "jupyterhub-sidecars"), "demo", "--port", str(port),
                             "--dir", str(state)],
                            stdout=output.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                            if ignore_sigint else None)
    try:
        deadline = time.monotonic() + 60
        while "demo is running" not in output.read_text(errors="replace"):
            assert demo.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.3)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()
        raise
    return demo, output


def _run_demo(tmp_path: Path, state: Path) -> None:
    port = free_demo_port()
    # Started the way a background job or a CI runner starts it, with SIGINT ignored: Ctrl-C
    # (kill -INT) must stop it all the same (the extras test starts it the plain way).
    demo, output = _start_demo(tmp_path, state, port, ignore_sigint=True)
    try:
        banner = output.read_text()
        assert f"http://127.0.0.1:{port}/hub/login" in banner
        assert "Quick look" in banner and "$BEARER_TOKEN_FILE" in banner
        _check_kubepie(banner, port, state)

        browser = log_in(f"http://127.0.0.1:{port}", "alice")
        form = browser.get("/hub/spawn")
        assert "(Limits: 1GB RAM, 1 CPU, 2 min)" in form.text
        action = re.search(r'id="spawn_form"\s+action="([^"]+)"', form.text)
        assert action
        browser.post(action.group(1), data={"profile": "quick"})
        notebook = _wait_for_notebook("alice")
        status = wait_sidecar(notebook["JUPYTERHUB_SIDECARS_WALLTIME_URL"], "/status",
                              timeout=20).json()
        assert status["limit"] == 120 and status["warnings"] == [60]
        token = Path(notebook["BEARER_TOKEN_FILE"]).read_text().strip()
        userinfo = httpx.get(f"http://127.0.0.1:{port + 1400}/userinfo", timeout=5,
                             headers={"Authorization": f"Bearer {token}"})
        assert userinfo.json()["uidNumber"] == 1001
        usage = wait_http(f"http://127.0.0.1:{port + 768}/usage", status=200).json()
        [alice] = [s for s in usage["servers"] if s["user"] == "alice"]
        assert alice["profile"] == "quick" and alice["walltime"]["limit"] == 120
        assert alice["containers"]["notebook"]["memory"]["limit_bytes"] == 1024**3
        _saved_in_jupyterlab_is_alices(browser, port, state, banner)
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(30) == 0
    assert not _notebook_of("alice"), "Ctrl-C should leave no server behind"


def _saved_in_jupyterlab_is_alices(browser: httpx.Client, port: int, state: Path,
                                   banner: str) -> None:
    """A notebook alice saves in JupyterLab (the contents API, with her browser session) is
    hers on disk (uid 1001 as root), shows in the banner's rclone listing, and bob can read
    it neither on disk nor over WebDAV."""
    deadline = time.monotonic() + 60
    lab = browser.get("/user/alice/lab")
    while "/spawn-pending/" in str(lab.url) and time.monotonic() < deadline:
        time.sleep(0.5)  # the hub still waits for the server to answer
        lab = browser.get("/user/alice/lab")
    xsrf = next((c.value for c in browser.cookies.jar if c.name == "_xsrf"
                 and c.path.startswith("/user/alice")), None)
    assert xsrf, (lab.status_code, lab.url, lab.history, [(c.name, c.path)
                                                       for c in browser.cookies.jar])
    saved = browser.put("/user/alice/api/contents/saved-in-lab.ipynb",
                        headers={"X-XSRFToken": xsrf or ""},
                        json={"type": "notebook", "format": "json", "content": {
                            "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}})
    assert saved.status_code == 201, saved.text
    on_disk = state / "home" / "alice" / "saved-in-lab.ipynb"
    if os.geteuid() == 0:
        assert on_disk.stat().st_uid == 1001
        as_bob = subprocess.run(["setpriv", "--reuid=1002", "--regid=1002", "--clear-groups",
                                 "cat", str(on_disk)], capture_output=True, text=True)
        assert as_bob.returncode != 0 and "Permission denied" in as_bob.stderr
    assert "saved-in-lab.ipynb" in _rclone_lsf(banner, port)
    bob_id, bob_secret = fresh_key(state, DEMO_USERS[1])
    bob = httpx.get(f"http://127.0.0.1:{port + 780}/home/saved-in-lab.ipynb",
                    auth=(bob_id, bob_secret), timeout=30)
    assert bob.status_code == 404  # bob's /home/ is his own


def _rclone_lsf(banner: str, port: int) -> str:
    """``rclone lsf :webdav:home/`` exactly as the banner says to run it."""
    key = re.search(r"key id (KP\w+)\s+secret (\S+)", banner)
    assert key, banner
    rclone = require_tool("rclone")
    obscured = subprocess.run([rclone, "obscure", key.group(2)], capture_output=True,
                              text=True, check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG": "/dev/null",
           "RCLONE_WEBDAV_URL": f"http://127.0.0.1:{port + 780}/",
           "RCLONE_WEBDAV_VENDOR": "other", "RCLONE_WEBDAV_USER": key.group(1),
           "RCLONE_WEBDAV_PASS": obscured}
    listed = subprocess.run([rclone, "lsf", ":webdav:home/"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def _check_kubepie(banner: str, port: int, state: Path) -> None:
    """The banner's rclone recipe works as printed: alice's key lists alice's home."""
    key = re.search(r"key id (KP\w+)\s+secret (\S+)", banner)
    assert key, banner
    (state / "home" / "alice" / "from-the-demo.txt").write_text("hello\n")
    rclone = require_tool("rclone")
    obscured = subprocess.run([rclone, "obscure", key.group(2)], capture_output=True,
                              text=True, check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG": "/dev/null",
           "RCLONE_WEBDAV_URL": f"http://127.0.0.1:{port + 780}/",
           "RCLONE_WEBDAV_VENDOR": "other", "RCLONE_WEBDAV_USER": key.group(1),
           "RCLONE_WEBDAV_PASS": obscured}
    assert f"RCLONE_WEBDAV_URL=http://127.0.0.1:{port + 780}/" in banner
    listed = subprocess.run([rclone, "lsf", ":webdav:home/"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "from-the-demo.txt" in listed.stdout, listed.stderr


def _notebook_of(user: str) -> dict[str, str] | None:
    for pid in subprocess.run(["pgrep", "-f", "jupyterhub-singleuser"], capture_output=True,
                              text=True, check=False).stdout.split():
        try:
            env = process_env(int(pid))
        except OSError:
            continue
        if env.get("JUPYTERHUB_USER") == user and "BEARER_TOKEN_FILE" in env:
            return env
    return None


def _wait_for_notebook(user: str, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        env = _notebook_of(user)
        if env and Path(env["BEARER_TOKEN_FILE"]).exists():
            return env
        time.sleep(0.3)
    raise AssertionError("the demo's notebook server did not start with its sidecars")
