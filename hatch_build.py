"""Build hook: the JupyterLab extension is built from labextension/ into the wheel.

Users install a prebuilt extension with pip and need no Node.js; building the package (or
``pip install -e .``) needs Node.js and the npm registry, and rebuilds only when a source
changed. Equivalent to hatch-jupyter-builder's npm builder, with JupyterLab's own core
package versions (its ``staging`` folder) so no GitHub access is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "labextension"
OUTPUT = "services/metrics/labextension"


def _newest(paths: list[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


class LabextensionBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        source, output = root / SOURCE, root / OUTPUT
        inputs = [*source.glob("src/*.ts"), *source.glob("style/*"),
                  source / "package.json", source / "package-lock.json", source / "tsconfig.json"]
        built = output / "package.json"
        if built.exists() and built.stat().st_mtime >= _newest(inputs):
            return
        npm = shutil.which("npm")
        node = shutil.which("node")
        if not npm or not node:
            raise RuntimeError("building the JupyterLab extension needs Node.js and npm "
                               "(Debian: apt-get install nodejs npm)")
        import jupyterlab

        staging = Path(jupyterlab.__file__).parent / "staging"
        lock, modules = source / "package-lock.json", source / "node_modules"
        if not modules.exists() or _newest([lock]) > modules.stat().st_mtime:
            # npm ci rejects this lockfile over optional platform packages it leaves out
            # (rollup), so install from it without rewriting it.
            subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund",
                            "--loglevel=error"],
                           cwd=source, check=True)
        subprocess.run([npm, "run", "build:lib"], cwd=source, check=True)
        builder = modules / "@jupyterlab" / "builder" / "lib" / "build-labextension.js"
        subprocess.run([node, str(builder), "--core-path", str(staging), "."], cwd=source,
                       check=True)
        built.touch()
