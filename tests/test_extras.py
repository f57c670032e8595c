"""Each extra of the package, installed alone into a fresh virtualenv as an operator or a
newcomer would (``pip install 'jupyterhub-sidecars[demo]'``), runs what it is for.

The wheels come from this venv's pip into a wheelhouse first, so each install is offline and
takes only what the extra declares: a dependency that only the test extra brought in (the
``demo`` extra once lacked OAuthenticator: "generic-oauth could not be imported") fails here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.fileserver import Fileserver, open_folder
from harness.hub import free_demo_port
from harness.tools import REPO, pip_wheel, wait_http

pytestmark = pytest.mark.slow

ALL_EXTRAS = "demo,dashboard,bench,hub"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.mktemp("wheelhouse")
    pip_wheel(wheels, f"{REPO}[{ALL_EXTRAS}]")
    return wheels


def fresh_venv(wheelhouse: Path, where: Path, extra: str) -> Path:
    """A new virtualenv with the package and ``extra`` only; its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    requirement = f"jupyterhub-sidecars[{extra}]" if extra else "jupyterhub-sidecars"
    result = subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--find-links", str(wheelhouse), requirement],
        capture_output=True, text=True, timeout=600, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")})
    assert result.returncode == 0, result.stderr[-3000:]
    return where / "bin"


def run(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=120, check=False, cwd=bin_dir,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env})


def test_the_package_alone_runs_the_sidecars(wheelhouse: Path, tmp_path: Path) -> None:
    """What the sidecar and file server images install: every service starts from it."""
    bin_dir = fresh_venv(wheelhouse, tmp_path / "venv", "")
    help_text = run(bin_dir, "jupyterhub-sidecars", "--help").stdout
    for command in ("walltime", "tokenhelper", "kubepie", "metrics", "usage", "demo"):
        assert command in help_text
    # A bad configuration: one line naming the setting, exit 2 (the service loaded fine).
    refused = run(bin_dir, "jupyterhub-sidecars", "tokenhelper")
    assert refused.returncode == 2 and "JUPYTERHUB_API_URL" in refused.stderr, refused.stderr
    usage = run(bin_dir, "jupyterhub-sidecars", "usage", "--json")
    assert usage.returncode == 0, usage.stderr
    assert '"used_bytes"' in usage.stdout
    with open_folder() as folder:
        (folder / "home").mkdir()
        with Fileserver({"home": folder / "home"}, bin_dir=bin_dir) as server:
            put = httpx.put(f"{server.url}/home/hello.txt", content=b"hello\n", timeout=10)
            assert put.status_code == 201
            assert httpx.get(f"{server.url}/home/hello.txt", timeout=10).content == b"hello\n"


def test_the_hub_extra_installs_the_hooks_as_the_chart_loads_them(
        wheelhouse: Path, tmp_path: Path) -> None:
    bin_dir = fresh_venv(wheelhouse, tmp_path / "venv", "hub")
    # deploy/jupyterhub/values.yaml's hub.extraConfig, run as the hub runs it.
    snippet = ("from traitlets.config import Config\n"
               "c = Config()\n"
               "from services.hub.hooks import install\n"
               "install(c)\n"
               "assert callable(c.Spawner.pre_spawn_hook), c\n"
               "assert callable(c.KubeSpawner.modify_pod_hook), c\n"
               "print('installed')\n")
    result = run(bin_dir, "python", "-c", snippet)
    assert result.returncode == 0 and "installed" in result.stdout, result.stderr
    # The hub-wide backstop the chart starts as a hub service.
    backstop = run(bin_dir, "jupyterhub-sidecars", "walltime", "--all-servers")
    assert backstop.returncode == 2 and "JUPYTERHUB_API_URL" in backstop.stderr, \
        backstop.stderr


def test_the_dashboard_extra_generates_the_dashboard(wheelhouse: Path, tmp_path: Path) -> None:
    bin_dir = fresh_venv(wheelhouse, tmp_path / "venv", "dashboard")
    result = run(bin_dir, "python", "-m", "services.metrics.dashboard")
    assert result.returncode == 0, result.stderr
    committed = REPO / "deploy" / "metrics" / "grafana" / "jupyterhub-sidecars.json"
    assert result.stdout == committed.read_text()


def test_the_bench_extra_brings_the_python_webdav_peers(wheelhouse: Path,
                                                          tmp_path: Path) -> None:
    bin_dir = fresh_venv(wheelhouse, tmp_path / "venv", "bench")
    result = run(bin_dir, "python", "-c", "import cheroot.wsgi, wsgidav.wsgidav_app; print('ok')")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@pytest.fixture
def demo_venv(wheelhouse: Path, tmp_path: Path) -> Iterator[Path]:
    yield fresh_venv(wheelhouse, tmp_path / "venv", "demo")


def test_the_demo_extra_runs_the_demo(demo_venv: Path, tmp_path: Path) -> None:
    """`pip install 'jupyterhub-sidecars[demo]'` then `jupyterhub-sidecars demo`: the hub
    with its OIDC login and the local provider come up (configurable-http-proxy is an npm
    tool, not a Python package: the repository's one is on PATH)."""
    port = free_demo_port()
    log = tmp_path / "demo.log"
    env = {"PATH": f"{demo_venv}:{REPO / 'node_modules' / '.bin'}:/usr/bin:/bin",
           "HOME": str(tmp_path)}
    with open_folder() as state, log.open("wb") as output:
        demo = subprocess.Popen([str(demo_venv / "jupyterhub-sidecars"), "demo", "--port",
                                 str(port), "--dir", str(state / "state")],
                                stdout=output, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while "demo is running" not in log.read_text(errors="replace"):
                assert demo.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(0.5)
            wait_http(f"http://127.0.0.1:{port}/hub/health", status=200, timeout=30)
            login = httpx.get(f"http://127.0.0.1:{port}/hub/oauth_login",
                              follow_redirects=False, timeout=10)
            assert login.status_code == 302, login.text  # to the OIDC provider
            provider = login.headers["location"].split("?")[0]
            assert httpx.get(provider, timeout=10).status_code < 500
        finally:
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C, as the banner says
            try:
                status = demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                status = demo.wait()
    text = log.read_text(errors="replace")
    assert status == 0 and "Traceback" not in text, text[-4000:]
