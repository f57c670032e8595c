"""Profiles that need a JupyterHub role or group: each user is offered and may start only
their own (seed 004's compute instances), on a real hub with users in different groups."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from harness.hub import Hub
from services.hub.compute_profiles import build_profiles
from services.hub.profile_access import (
    Access,
    GatedProfiles,
    ProfileForbidden,
    choose,
    is_gated,
    visible,
)
from services.hub.profiles import ProfileError

PROFILES = [
    {"slug": "cpu", "display_name": "CPU"},
    {"slug": "a100", "display_name": "A100", "required_role": "a100-20g", "default": True},
    {"slug": "bio", "display_name": "Bio", "required_group": ["bio", "bio-admins"]},
    {"slug": "both", "display_name": "Both", "required_role": ["gpu"], "required_group": "xray"},
]


@dataclass
class Named:
    name: str
    roles: list[Named] = field(default_factory=list)


@dataclass
class User:
    roles: list[Named] = field(default_factory=list)
    groups: list[Named] = field(default_factory=list)


def test_who_may_use_what() -> None:
    nobody = Access.of(User())
    gpu = Access.of(User(roles=[Named("a100-20g")]))
    via_group = Access.of(User(groups=[Named("beamline", roles=[Named("a100-20g")])]))
    bio = Access.of(User(groups=[Named("bio-admins")]))
    assert [p["slug"] for p in visible(PROFILES, nobody)] == ["cpu"]
    assert [p["slug"] for p in visible(PROFILES, gpu)] == ["cpu", "a100"]
    assert via_group.may_use(PROFILES[1])  # a role through a group counts
    assert [p["slug"] for p in visible(PROFILES, bio)] == ["cpu", "bio"]
    assert Access(frozenset(), frozenset({"xray"})).may_use(PROFILES[3])  # either gate
    assert is_gated(PROFILES) and not is_gated(PROFILES[:1])


def test_the_choice_is_checked_and_the_default_is_among_ones_own() -> None:
    nobody = Access.of(User())
    assert choose(PROFILES, nobody, {})["slug"] == "cpu"  # the default is not theirs
    assert choose(PROFILES, Access.of(User(roles=[Named("a100-20g")])), {})["slug"] == "a100"
    with pytest.raises(ProfileForbidden, match="'a100' is for users with role a100-20g"):
        choose(PROFILES, nobody, {"profile": "a100"})
    with pytest.raises(ProfileForbidden, match="group bio or bio-admins"):
        choose(PROFILES, nobody, {"profile": "bio"})
    with pytest.raises(ProfileError, match="no profile with slug 'gpu'"):
        choose(PROFILES, nobody, {"profile": "gpu"})
    with pytest.raises(ProfileForbidden, match="none of the profiles"):
        choose(PROFILES[1:3], nobody, {})
    assert choose([], nobody, {}) is None


def test_kubespawner_is_given_a_list_per_user() -> None:
    """install(c) turns a gated profile_list into KubeSpawner's callable form."""
    from traitlets.config import Config

    from services.hub.hooks import install

    c = Config()
    c.KubeSpawner.profile_list = PROFILES
    install(c)
    gated = c.KubeSpawner.profile_list
    assert isinstance(gated, GatedProfiles) and len(gated.all) == len(PROFILES)
    assert "Limits" in gated.all[0]["description"]  # still with the generated limits

    class Spawner:
        user = User(groups=[Named("bio")])

    assert [p["slug"] for p in gated(Spawner())] == ["cpu", "bio"]
    plain = Config()
    plain.KubeSpawner.profile_list = PROFILES[:1]
    install(plain)
    assert isinstance(plain.KubeSpawner.profile_list, list)  # nothing gated: a plain list


def test_profiles_are_built_from_compute_instances_and_profiles() -> None:
    instances = {
        "a100_20g": {"display_name": "A100 20G", "cpu_limit": 8, "mem_limit": "100G",
                     "gpu_resource_name": "nvidia.com/mig-2g.20gb", "gpu_limit": 1,
                     "gpu_guarantee": 1, "gpu_memory": "20Gi", "node_type": "a100",
                     "walltime": "12h", "idle": "2h", "required_role": "a100-20g"},
        "cpu": {"display_name": "CPU", "cpu_limit": 2, "mem_limit": "10G", "idle": "6h"}}
    entries = [{"display_name": "Beamline", "slug": "beamline", "default": True,
                "allowed_compute_instances": ["a100_20g", "cpu"],
                "profile_options": {"image": {"display_name": "Image", "choices": {}}}},
               {"display_name": "ARC", "allowed_compute_instances": ["cpu"], "walltime": "1h"}]
    built = build_profiles(instances, entries)
    assert [p["slug"] for p in built] == ["beamline-a100-20g", "beamline-cpu", "arc"]
    gpu, cpu, arc = built
    assert gpu["display_name"] == "Beamline — A100 20G" and gpu["default"] is True
    assert gpu["kubespawner_override"] == {
        "cpu_limit": 8, "mem_limit": "100G", "node_selector": {"node_type": "a100"},
        "extra_resource_limits": {"nvidia.com/mig-2g.20gb": "1"},
        "extra_resource_guarantees": {"nvidia.com/mig-2g.20gb": "1"}}
    assert (gpu["walltime"], gpu["idle"], gpu["gpu_memory"], gpu["required_role"]) == \
        ("12h", "2h", "20Gi", "a100-20g")
    assert "default" not in cpu and cpu["idle"] == "6h" and "required_role" not in cpu
    assert arc["display_name"] == "ARC" and arc["walltime"] == "1h"  # one instance: its name
    assert gpu["profile_options"]["image"]["display_name"] == "Image"
    for bad, message in (
            ([{"slug": "x", "allowed_compute_instances": ["tpu"]}], "no compute instance 'tpu'"),
            ([{"slug": "x", "allowed_compute_instances": []}], "allowed_compute_instances"),
            ([{"slug": "x", "allowed_compute_instances": ["cpu"], "required_role": "r"}],
             "unknown key 'required_role'"),  # who may use it is the instance's business
            ([{"slug": "x", "allowed_compute_instances": ["cpu"]},
              {"slug": "x", "allowed_compute_instances": ["cpu"]}], "slug 'x'")):
        with pytest.raises(ProfileError, match=message):
            build_profiles(instances, bad)
    with pytest.raises(ProfileError, match="compute instance 'cpu': unknown key 'gpus'"):
        build_profiles({"cpu": {"gpus": 1}}, entries[1:])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    instance = Hub(tmp_path_factory.mktemp("access-hub"))
    instance.start()
    yield instance
    for user in instance.api("GET", "/users").json():
        instance.api("DELETE", f"/users/{user['name']}/server")
    instance.stop()


def _spawn_page(hub: Hub, user: str) -> str:
    browser = httpx.Client(base_url=hub.public_url, follow_redirects=True, timeout=30)
    browser.get("/hub/login")
    xsrf = browser.cookies.get("_xsrf") or ""
    browser.post("/hub/login", data={"username": user, "password": "x", "_xsrf": xsrf})
    form = browser.get("/hub/spawn")
    browser.close()
    assert form.status_code == 200, form.text[:300]
    return form.text


@pytest.mark.slow
def test_each_user_sees_and_starts_only_their_own_profiles(hub: Hub) -> None:
    hub.api("POST", "/users/bio-user")
    hub.api("POST", "/users/plain-user")
    assert hub.api("POST", "/groups/bio", json={"users": ["bio-user"]}).status_code in (201,
                                                                                        409)
    offered = {user: set(re.findall(r'name="profile" value="([^"]+)"',
                                     _spawn_page(hub, user)))
               for user in ("gpu-user", "bio-user", "plain-user")}
    assert "a100" in offered["gpu-user"] and "bio-large" not in offered["gpu-user"]
    assert "bio-large" in offered["bio-user"] and "a100" not in offered["bio-user"]
    assert not {"a100", "bio-large"} & offered["plain-user"] and "long" in offered["plain-user"]

    # A forbidden choice sent by hand: refused with a message, nothing started.
    refused = hub.api("POST", "/users/plain-user/server", json={"profile": "a100"})
    assert refused.status_code == 403 and "role a100-20g" in refused.text, refused.text
    assert hub.server_model("plain-user") is None
    denied = hub.api("POST", "/users/gpu-user/server", json={"profile": "bio-large"})
    assert denied.status_code == 403 and "group bio" in denied.text

    model = hub.start_server("gpu-user", profile="a100")
    assert model["user_options"]["profile"] == "a100"
    model = hub.start_server("bio-user", profile="bio-large")
    assert model["user_options"]["walltime_seconds"] == 7200
    hub.api("DELETE", "/users/gpu-user/server")
    hub.api("DELETE", "/users/bio-user/server")
