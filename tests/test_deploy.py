"""What an operator applies: Z2JH values against the chart's schema, hooks wiring, images."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from traitlets.config import Config

from harness.network_policy import egress_to_address_allowed
from harness.tools import REPO, require_tool
from services.hub import hooks
from services.hub.profiles import slug_of, walltime_of
from services.runtime.settings import env_name
from services.walltime.settings import BackstopSettings

VALUES = REPO / "deploy" / "jupyterhub" / "values.yaml"
SCHEMAS = [REPO / "deploy" / "jupyterhub" / "z2jh-values.schema.yaml",
           REPO.parent / "shared" / "schemas" / "z2jh-values.schema.yaml"]
DOCKERFILES = sorted((REPO / "deploy" / "images").glob("*Dockerfile"))


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES.read_text()))


def required_skeleton(schema: dict[str, Any]) -> Any:
    """Minimal values for every *required* key, derived from the schema itself.

    Helm validates the chart's defaults merged with the operator's values; the chart's
    defaults are not here, so the schema's required keys stand in for them. Everything we
    set is then checked strictly (the schema forbids unknown keys almost everywhere).
    """
    kinds = schema.get("type")
    kind = kinds[0] if isinstance(kinds, list) else kinds
    if "enum" in schema:
        return next(v for v in schema["enum"] if v is not None)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {key: required_skeleton(props.get(key, {})) for key in schema.get("required", [])}
    return {"string": "x", "boolean": False, "array": [], "integer": 1, "number": 1}.get(
        kind or "string", "x")


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else replaces."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = dict(base)
    for key, value in override.items():
        merged[key] = helm_merge(base[key], value) if key in base else value
    return merged


def validate_values(values: dict[str, Any], schema: dict[str, Any]) -> None:
    merged = helm_merge(required_skeleton(schema), values)
    jsonschema.validators.validator_for(schema)(schema).validate(merged)


@pytest.mark.parametrize("schema_path", [p for p in SCHEMAS if p.exists()],
                         ids=lambda p: p.parent.name)
def test_values_match_the_chart_schema(values: dict[str, Any], schema_path: Path) -> None:
    validate_values(values, yaml.safe_load(schema_path.read_text()))


@pytest.mark.parametrize("mistake", [
    {"hub": {"config": {"sidecars": {}}}},  # config classes start with a capital
    {"hub": {"extraConfig": "install(c)"}},  # a dict of snippets, not a string
    {"singleuser": {"profileList": {"a": 1}}},  # a list
    {"hub": {"image": {"tags": "1.0"}}},  # a misspelt key
])
def test_the_schema_check_catches_mistakes(values: dict[str, Any], mistake: dict) -> None:
    schema = yaml.safe_load(SCHEMAS[0].read_text())
    with pytest.raises(jsonschema.ValidationError):
        validate_values(helm_merge(values, mistake), schema)


def test_extra_config_installs_the_hooks(values: dict[str, Any]) -> None:
    c = Config()
    c.KubeSpawner.modify_pod_hook = lambda spawner, pod: pod  # an operator's own hook
    for _, snippet in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(snippet, "extraConfig", "exec"), {"c": c})  # noqa: S102 - our own file
    assert c.Spawner.pre_spawn_hook is hooks.pre_spawn_hook
    assert c.Spawner.post_stop_hook is hooks.post_stop_hook
    assert c.KubeSpawner.modify_pod_hook.__name__ == "both"  # chained, not replaced


def _installed(values: dict[str, Any]) -> Config:
    """What Z2JH's hub does: hub.config into c, then the extraConfig snippets."""
    c = Config()
    c.KubeSpawner.profile_list = values["singleuser"].get("profileList", [])
    c.Sidecars = Config(values["hub"]["config"]["Sidecars"])
    for _, snippet in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(snippet, "extraConfig", "exec"), {"c": c})  # noqa: S102 - our own file
    return c


def test_spawn_page_shows_each_profiles_generated_limits(values: dict[str, Any]) -> None:
    """Profiles from compute instances x profiles, each with its generated limits."""
    profile_list = _installed(values).KubeSpawner.profile_list
    profiles = getattr(profile_list, "all", profile_list)  # gated: a callable per user
    shown = {p["slug"]: p["description"] for p in profiles}
    assert shown["beamline-a100-10g-quick"].startswith(
        "Limits: 50GB RAM, 8 CPU, 10GB VRAM, 30 min. Notebooks tailored")
    assert shown["arc"].startswith(
        "Limits: 10GB RAM, 2 CPU, 50GB disk, 12 h, stops after 6 h idle. ARC 6 commands")
    assert shown["beamline-cpu-small"].startswith(  # walltime_default, the instance's idle
        "Limits: 10GB RAM, 2 CPU, 8 h, stops after 6 h idle")
    assert shown["beamline-a100-20g"].startswith(
        "Limits: 100GB RAM, 8 CPU, 20GB VRAM, 12 h, stops after 2 h idle")


def test_the_a100_slice_is_offered_only_to_its_role(values: dict[str, Any]) -> None:
    gated = _installed(values).KubeSpawner.profile_list
    assert callable(gated)

    def named(name: str, **more: Any) -> Any:
        return type(name, (), {"name": name, **more})()

    member = type("Member", (), {})()
    member.roles, member.groups = [], [named("a100-users", roles=[named("a100-20g")])]
    other = type("Other", (), {})()
    other.roles, other.groups = [], []

    def slugs(user: Any) -> set[str]:
        return {p["slug"] for p in gated(type("S", (), {"user": user})())}

    assert "beamline-a100-20g" in slugs(member) and "beamline-a100-20g" not in slugs(other)
    assert values["hub"]["loadRoles"]["a100-20g"]["groups"] == ["a100-users"]
    gpu = next(p for p in gated.all if p["slug"] == "beamline-a100-20g")
    assert gpu["kubespawner_override"]["extra_resource_limits"] == {
        "nvidia.com/mig-2g.20gb": "1"}
    assert gpu["kubespawner_override"]["node_selector"] == {"node_type": "a100"}
    assert gpu["profile_options"]["image"]["choices"]["scipy"]["default"] is True


def test_hub_config_keys_are_real_settings(values: dict[str, Any]) -> None:
    configured = values["hub"]["config"]["Sidecars"]
    known = set(hooks.Sidecars.class_trait_names(config=True))
    assert set(configured) <= known, set(configured) - known
    sidecars = hooks.Sidecars(config=Config({"Sidecars": configured}))
    assert sidecars.walltime_default == "8h"


def test_profiles_have_valid_walltimes_and_unique_slugs(values: dict[str, Any]) -> None:
    profile_list = _installed(values).KubeSpawner.profile_list
    profiles = getattr(profile_list, "all", profile_list)
    slugs = [slug_of(p) for p in profiles]
    assert len(set(slugs)) == len(slugs)
    limits = {slug_of(p): walltime_of(p, values["hub"]["config"]["Sidecars"]["walltime_default"])
              for p in profiles}
    assert limits == {"beamline-a100-shared": 12 * 3600, "beamline-a100-10g-quick": 1800,
                      "beamline-a100-20g": 12 * 3600, "beamline-cpu-small": 8 * 3600,
                      "arc": 12 * 3600}


# What Z2JH 4.x renders for singleuser pods from its default egressAllowRules (templates/
# singleuser/netpol.yaml): DNS, and every address that is not private.
Z2JH_DEFAULT_EGRESS = [
    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
     "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"ipBlock": {"cidr": "172.16.0.0/12"}},
            {"ipBlock": {"cidr": "192.168.0.0/16"}}]},
    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32"]}}]},
]


def test_the_tokenhelper_may_reach_a_provider_on_a_private_address(
        values: dict[str, Any]) -> None:
    """Z2JH denies user pods egress to private addresses; the values allow the provider's
    (and only on 443), so the tokenhelper in the user pod can refresh tokens."""
    ours = values["singleuser"]["networkPolicy"]["egress"]
    provider = ours[0]["to"][0]["ipBlock"]["cidr"].split("/")[0]
    assert ipaddress.ip_address(provider).is_private
    assert not egress_to_address_allowed(Z2JH_DEFAULT_EGRESS, provider, 443)
    assert egress_to_address_allowed(Z2JH_DEFAULT_EGRESS + ours, provider, 443)
    assert not egress_to_address_allowed(Z2JH_DEFAULT_EGRESS + ours, provider, 22)
    assert not egress_to_address_allowed(Z2JH_DEFAULT_EGRESS + ours, "10.20.30.41", 443)
    assert egress_to_address_allowed(Z2JH_DEFAULT_EGRESS, "193.170.1.1", 443)  # public


def test_tokenhelper_service_and_role(values: dict[str, Any]) -> None:
    assert values["hub"]["services"]["tokenhelper"] == {}  # API-only: owns tokens, runs nothing
    role = values["hub"]["loadRoles"]["tokenhelper"]
    assert sorted(role["scopes"]) == ["admin:auth_state", "read:users:name"]
    assert values["hub"]["config"]["GenericOAuthenticator"]["enable_auth_state"] is True


def test_backstop_service_is_least_privilege(values: dict[str, Any]) -> None:
    service = values["hub"]["services"]["walltime-backstop"]
    assert service["command"] == ["jupyterhub-sidecars", "walltime", "--all-servers"]
    known_env = {env_name(BackstopSettings, f) for f in BackstopSettings.model_fields}
    assert set(service["environment"]) <= known_env
    role = values["hub"]["loadRoles"]["walltime-backstop"]
    assert sorted(role["scopes"]) == ["delete:servers", "list:users", "read:servers"]
    assert role["services"] == ["walltime-backstop"]
    BackstopSettings(JUPYTERHUB_API_URL="http://hub:8081/hub/api", api_token="x",
                     **{k.removeprefix("WALLTIME_").lower(): v
                        for k, v in service["environment"].items()})


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# What building the package needs (the wheel's build hook compiles the JupyterLab extension).
BUILD_INPUTS = ("pyproject.toml", "README.md", "hatch_build.py", "services", "labextension",
                "jupyter-config")


def test_dockerfile_builds_the_package_once_for_every_image() -> None:
    """One wheel stage (the package with its JupyterLab extension) feeds every target."""
    text = (REPO / "deploy" / "images" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.MULTILINE)
    assert [name for _, name in stages] == ["wheel", "sidecars", "fileserver", "hub",
                                            "notebook"]
    copied = {word for line in text.splitlines() if line.startswith("COPY ")
              and "--from=" not in line for word in line.split()[1:-1]}
    assert set(BUILD_INPUTS) <= copied, f"the wheel stage misses {set(BUILD_INPUTS) - copied}"
    assert text.count("pip wheel") == 1 and "nodejs" in text
    for path in BUILD_INPUTS:
        assert (REPO / path).exists(), path
    # Each target ends non-root (the image tests run them and check the user too).
    for block in re.split(r"^FROM ", text, flags=re.MULTILINE)[2:]:
        users = [line.split()[1] for line in block.splitlines() if line.startswith("USER ")]
        assert not users or users[-1].split(":")[0] not in ("0", "root"), block[:40]
    # The defaults of the build arguments are production's: the public bases and PyPI.
    defaults = dict(re.findall(r"^ARG (\w+)=(\S*)$", text, re.MULTILINE))
    assert defaults["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    assert defaults["HUB_IMAGE"] == "quay.io/jupyterhub/k8s-hub:4.2.0"
    assert defaults["PIP_INDEX_URL"] == "https://pypi.org/simple"
    assert defaults["PIP_NO_INDEX"] == "0" and defaults["PIP_FIND_LINKS"] == ""


def test_build_context_leaves_out_what_is_not_the_package() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then the build inputs back in
    assert lines[1:7] == [f"!{path}" + ("/" if (REPO / path).is_dir() else "")
                          for path in BUILD_INPUTS]
    assert "labextension/node_modules/" in lines


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout
