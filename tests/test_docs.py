"""The configuration reference (docs/configuration.md) covers every setting there is."""

from __future__ import annotations

import pytest

from harness.tools import REPO
from services.contract import GPU_LIMIT_ENV, USAGE_SCOPE_ENV
from services.hub.hooks import Sidecars
from services.kubepie.fileserver.settings import FileserverSettings
from services.kubepie.gateway.settings import GatewaySettings
from services.kubepie.webhook.settings import WebhookSettings
from services.metrics.settings import AgentSettings
from services.runtime.settings import env_name, flag_name
from services.tokenhelper.settings import TokenhelperSettings
from services.walltime.settings import BackstopSettings, SidecarSettings

README = (REPO / "README.md").read_text()
REFERENCE = (REPO / "docs" / "configuration.md").read_text()
MODELS = [SidecarSettings, BackstopSettings, TokenhelperSettings, AgentSettings,
          FileserverSettings, GatewaySettings, WebhookSettings]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_environment_variable_and_flag_is_documented(model: type) -> None:
    for field in model.model_fields:
        assert f"`{env_name(model, field)}`" in REFERENCE, field
        assert f"`{flag_name(field)}`" in REFERENCE, field


def test_every_hook_setting_is_documented() -> None:
    for name in Sidecars.class_trait_names(config=True):
        assert f"| `{name}` |" in REFERENCE, name


def test_the_readme_names_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_in_session_variables_are_documented() -> None:
    for name in (USAGE_SCOPE_ENV, GPU_LIMIT_ENV, "JUPYTERHUB_SIDECARS_PROFILE",
                 "JUPYTERHUB_SIDECARS_WALLTIME_URL"):
        assert f"| `{name}` |" in REFERENCE, name


def test_kustomize_bases_are_applied_with_k_in_the_docs() -> None:
    """`kubectl apply -f` on a folder with a kustomization.yaml fails on it ("no matches for
    kind Kustomization"): the docs must say `-k` for every base."""
    bases = {p.parent.relative_to(REPO).as_posix()
             for p in (REPO / "deploy").rglob("kustomization.yaml")}
    assert {"deploy/kubepie", "deploy/metrics", "deploy/lxcfs"} <= bases
    texts = [README, *(p.read_text() for p in (REPO / "docs").rglob("*.md"))]
    for base in bases:
        assert not any(f"apply -f {base}" in text for text in texts), base
