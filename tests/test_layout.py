"""Each package's public surface is its ``__init__``'s ``__all__``: the modules other packages
may import. Everything else is the package's own, free to change without looking elsewhere."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from harness.tools import REPO

SERVICES = REPO / "services"
# Modules outside any package's surface: the CLI and the names every service agrees on.
TOP_LEVEL = {"services.cli", "services.contract"}


def packages() -> list[str]:
    """Every package under services/, as a dotted name."""
    return sorted(".".join(p.parent.relative_to(REPO).parts)
                  for p in SERVICES.rglob("__init__.py") if "labextension" not in p.parts)


def owner(module: str, names: list[str]) -> str:
    """The deepest package ``module`` is in."""
    return max((p for p in names if module.startswith(p + ".")), key=len, default="services")


def imports(path: Path) -> list[str]:
    """Dotted names of the services modules ``path`` imports (``from P import m`` is P.m when
    m is a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("services."):
            found.append(node.module)
            for alias in node.names:
                if (SERVICES.parent / (node.module + "." + alias.name).replace(".", "/")
                        ).with_suffix(".py").exists():
                    found.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("services.")]
    return found


def test_every_package_says_what_other_packages_may_import() -> None:
    for package in packages():
        if package == "services":
            continue
        module = importlib.import_module(package)
        surface = getattr(module, "__all__", None)
        assert isinstance(surface, list), f"{package}/__init__.py has no __all__"
        for name in surface:
            path = REPO / package.replace(".", "/") / name
            assert path.with_suffix(".py").exists() or path.is_dir(), f"{package}.{name}"


def test_no_package_reaches_into_another_packages_own_modules() -> None:
    names = packages()
    surfaces = {p: set(importlib.import_module(p).__dict__.get("__all__", []))
                for p in names if p != "services"}
    reaching = []
    for path in sorted(SERVICES.rglob("*.py")):
        if "labextension" in path.parts:
            continue
        here = ".".join(path.with_suffix("").relative_to(REPO).parts)
        for target in imports(path):
            if target in TOP_LEVEL or target in names:
                continue
            package = owner(target, names)
            if package == "services" or here.startswith(package + "."):
                continue  # the package's own modules, or a top-level module
            child = target.removeprefix(package + ".").split(".")[0]
            if child not in surfaces[package]:
                reaching.append(f"{here} imports {target}: not in {package}.__all__")
    assert reaching == [], "\n".join(reaching)


def test_the_check_finds_a_reach_into_private_modules(tmp_path: Path) -> None:
    """The rule can fail: a made-up import of walltime's countdown from tokenhelper."""
    fake = tmp_path / "fake.py"
    fake.write_text("from services.walltime.countdown import Countdown\n"
                    "from services.kubepie.fileserver import mounts\n")
    assert imports(fake) == ["services.walltime.countdown",
                             "services.kubepie.fileserver", "services.kubepie.fileserver.mounts"]
    names = packages()
    assert owner("services.walltime.countdown", names) == "services.walltime"
    assert "countdown" not in importlib.import_module("services.walltime").__all__
