"""The JupyterLab extension: its unit tests (vitest) and the prebuilt copy the package ships."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from harness.tools import REPO, require_tool

SOURCE = REPO / "labextension"


def test_extension_unit_tests_pass() -> None:
    npm = require_tool("npm")
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    result = subprocess.run([npm, "test", "--silent"], cwd=SOURCE, capture_output=True,
                            text=True, timeout=300, check=False, env=env)
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # colours in CI
    assert result.returncode == 0, output[-3000:]
    passed = re.search(r"Tests\s+(\d+) passed", output)
    assert passed and int(passed.group(1)) >= 13, output[-3000:]
    assert "failed" not in output.split("Tests", 1)[1].splitlines()[0], output[-3000:]


def test_package_build_installed_the_prebuilt_extension() -> None:
    """pip install built it from labextension/ (hatch_build.py): no Node.js needed to use it."""
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / \
        "jupyterhub-sidecars-status"
    meta = json.loads((installed / "package.json").read_text())
    assert meta["name"] == "jupyterhub-sidecars-status"
    assert meta["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert (installed / meta["jupyterlab"]["_build"]["load"]).exists()
    assert json.loads((installed / "install.json").read_text())["packageName"] == \
        "jupyterhub-sidecars"
    listing = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "labextension",
                              "list"], capture_output=True, text=True, timeout=120, check=True)
    line = next(line for line in (listing.stdout + listing.stderr).splitlines()
                if "jupyterhub-sidecars-status" in line)
    assert "enabled" in line and "OK" in line, line
