"""The hub side against what Zero to JupyterHub 4.2.0's hub image ships: JupyterHub 5.3.0,
KubeSpawner 7.0.0, OAuthenticator 17.3.0 (the ``z2jh-hub`` extra, installed by make setup
into .venv-z2jh). The same test modules as against JupyterHub 6, run by that virtualenv's
pytest: the hooks and the pod (KubeSpawner 7.0.0), the walltime sidecar and the backstop, the
tokenhelper with the hub, the spawn page and role-gated profiles, the idle stop (the hub's
``last_activity``), the status API."""

from __future__ import annotations

import os
import subprocess

import pytest

from harness.tools import REPO, in_ci

pytestmark = pytest.mark.slow

Z2JH_PYTHON = REPO / ".venv-z2jh" / "bin" / "python"
MODULES = ["tests/test_hooks.py", "tests/test_profiles.py", "tests/test_kubespawner_pod.py",
           "tests/test_kubespawner_secret.py", "tests/test_walltime_hub.py",
           "tests/test_tokenhelper_hub.py", "tests/test_profile_access.py",
           "tests/test_idle_stop.py", "tests/test_metrics_session.py"]


@pytest.mark.timeout(1600)
def test_the_hub_side_passes_on_zero_to_jupyterhub_4_2s_versions() -> None:
    if not Z2JH_PYTHON.exists():
        message = ".venv-z2jh is missing (make setup creates it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    versions = subprocess.run(
        [str(Z2JH_PYTHON), "-c", "import jupyterhub, kubespawner, oauthenticator; "
         "print(jupyterhub.__version__, kubespawner.__version__, oauthenticator.__version__)"],
        capture_output=True, text=True, check=True).stdout.split()
    assert versions == ["5.3.0", "7.0.0", "17.3.0"]
    result = subprocess.run(
        [str(Z2JH_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", *MODULES],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=1500, check=False)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"JupyterHub 5.3.0 / KubeSpawner 7.0.0: {summary}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
