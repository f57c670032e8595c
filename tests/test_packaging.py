"""What the images install is what the services import: every third-party import of a service
comes from a declared dependency (or one of theirs). The file server once imported defusedxml
that only the test extras happened to bring."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

from harness.tools import REPO

# These run inside JupyterHub or jupyter_server, which bring their own libraries.
HOSTED = ("services/hub/", "services/demo/", "services/metrics/server_extension.py")
# Tools an operator runs once, whose libraries an extra of their own declares.
BY_EXTRA = {"services/metrics/dashboard.py": "dashboard"}


def _name(requirement: str) -> str:
    return re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(root: str) -> set[str]:
    """``root``'s non-optional requirements, recursively (installed distributions)."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {n for n in found if n not in sys.stdlib_module_names and n != "services"}


def test_every_service_import_is_a_declared_dependency() -> None:
    installed = _closure("jupyterhub-sidecars")
    distributions = metadata.packages_distributions()
    missing = []
    for path in sorted((REPO / "services").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(HOSTED):
            continue
        declared = installed | _extra(BY_EXTRA[relative]) if relative in BY_EXTRA else installed
        for module in _imports(path):
            names = {_name(d) for d in distributions.get(module, [module])}
            if not names & declared:
                missing.append(f"{relative}: {module}")
    assert missing == []


def _extra(name: str) -> set[str]:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    return {_name(r) for r in extras[name]}


def test_the_demo_extra_holds_what_the_demo_runs() -> None:
    """`pip install 'jupyterhub-sidecars[demo]'` then `jupyterhub-sidecars demo`: the hub
    with generic-oauth (OAuthenticator), the oidc-provider-mock it starts, JupyterLab."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    demo = {re.split(r"[<>=\[ ]", requirement)[0].lower() for requirement in extras["demo"]}
    assert {"jupyterhub", "jupyterlab", "oauthenticator", "oidc-provider-mock"} <= demo
    sources = "\n".join(p.read_text() for p in (REPO / "services" / "demo").glob("*.py"))
    assert '"generic-oauth"' in sources and "oidc-provider-mock" in sources
