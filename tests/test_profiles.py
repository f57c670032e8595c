import pytest

from services.hub.profiles import (
    ProfileError,
    chosen_profile,
    limits_summary,
    profiles_of,
    slug_of,
    walltime_of,
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
    assert limits_summary(PROFILES[1], None) == "time limit 30m"
    assert limits_summary(PROFILES[2], "8h") == "no time limit"


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
