import pytest

from services.hub.profiles import (
    ProfileError,
    chosen_profile,
    disk_limit_of,
    limits_summary,
    profiles_of,
    slug_of,
    walltime_of,
    with_limits,
)

PROFILES = [
    {"display_name": "Shared A100 (8 GB VRAM)", "walltime": "12h"},
    {"display_name": "Quick", "slug": "quick", "walltime": "30m", "default": True},
    {"display_name": "No limit", "slug": "free", "walltime": "none"},
    {"display_name": "Default limit", "slug": "plain"},
]


def test_slugs_match_kubespawner() -> None:
    assert slug_of(PROFILES[0]) == "shared-a100-8-gb-vram"
    assert slug_of(PROFILES[1]) == "quick"


def test_choice_named_default_and_first() -> None:
    assert chosen_profile(PROFILES, {"profile": "shared-a100-8-gb-vram"}) is PROFILES[0]
    assert chosen_profile(PROFILES, {}) is PROFILES[1]
    assert chosen_profile(PROFILES[2:], {}) is PROFILES[2]
    assert chosen_profile([], {"profile": "x"}) is None
    with pytest.raises(ProfileError, match="no profile with slug 'gpu'"):
        chosen_profile(PROFILES, {"profile": "gpu"})


def test_walltime_of_profile_or_default() -> None:
    assert walltime_of(PROFILES[1], "8h") == 1800
    assert walltime_of(PROFILES[2], "8h") is None
    assert walltime_of(PROFILES[3], "8h") == 8 * 3600
    assert walltime_of(PROFILES[3], None) is None
    assert walltime_of(None, "1d") == 86400
    with pytest.raises(ProfileError, match="profile 'bad': walltime 'soon'"):
        walltime_of({"slug": "bad", "walltime": "soon"}, None)


def test_limits_summary_for_the_spawn_page() -> None:
    assert limits_summary(PROFILES[1], None) == "Limits: 30 min"
    assert limits_summary(PROFILES[2], "8h") == "Limits: no time limit"
    seed = {"display_name": "Dedicated A100 10G Partition", "walltime": "30m",
            "gpu_memory": "10G", "kubespawner_override": {"mem_limit": "50G", "cpu_limit": 8}}
    assert limits_summary(seed, None) == "Limits: 50GB RAM, 8 CPU, 10GB VRAM, 30 min"
    assert limits_summary({"walltime": "90s", "kubespawner_override": {
        "mem_limit": 3 * 2**30, "cpu_limit": 1.5}}, None) == "Limits: 3GB RAM, 1.5 CPU, 90 s"
    assert limits_summary({"walltime": "12h", "kubespawner_override": {"mem_limit": "512M"}},
                          None) == "Limits: 512MB RAM, 12 h"
    assert limits_summary({"walltime": "1h", "disk_limit": "10Gi"}, None) == \
        "Limits: 10GB disk, 1 h"
    described = with_limits({**seed, "description": "For training."}, None)
    assert described["description"] == \
        "Limits: 50GB RAM, 8 CPU, 10GB VRAM, 30 min. For training."
    assert described["display_name"] == seed["display_name"]  # the slug stays the same


def test_disk_limit_reads_as_the_spawner_reads_sizes() -> None:
    """``10G`` is 10 * 2**30 bytes, as KubeSpawner reads ``mem_limit``: the spawn page's
    "10GB disk" and the status bar's "/ 10.0 GB" are the same number."""
    assert disk_limit_of({"disk_limit": "10G"}) == 10 * 2**30
    assert disk_limit_of({"disk_limit": "10Gi"}) == 10 * 2**30
    assert disk_limit_of({"disk_limit": "500M"}) == 500 * 2**20
    assert disk_limit_of({"disk_limit": 1500}) == 1500
    assert disk_limit_of({"disk_limit": "none"}) is None
    assert disk_limit_of({}) is None and disk_limit_of(None) is None
    with pytest.raises(ProfileError, match="profile 'big': disk_limit 'lots' is not a size"):
        disk_limit_of({"slug": "big", "disk_limit": "lots"})


async def test_profile_list_may_be_callable_async_or_dict() -> None:
    class Spawner:
        @staticmethod
        async def profile_list(spawner: object) -> list[dict]:
            return PROFILES[:1]

    assert await profiles_of(Spawner()) == PROFILES[:1]

    class DictSpawner:
        def __init__(self) -> None:
            self.profile_list = {"b": {"slug": "b"}, "a": {"slug": "a"}}

    assert [p["slug"] for p in await profiles_of(DictSpawner())] == ["a", "b"]
