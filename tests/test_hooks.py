"""Hook installation and the plan, without a hub (the real hub flow is in test_walltime_hub)."""

from __future__ import annotations

from typing import Any

from traitlets.config import Config

from services.hub import hooks
from services.hub.plan import SidecarPlan


async def test_chained_hooks_run_the_operators_first_and_pass_the_pod_along() -> None:
    calls: list[str] = []

    def operator_pre(spawner: Any) -> None:
        calls.append("operator-pre")

    async def our_pre(spawner: Any) -> None:
        calls.append("ours-pre")

    async def operator_modify(spawner: Any, pod: dict) -> dict:
        calls.append("operator-modify")
        return {**pod, "operator": True}

    def our_modify(spawner: Any, pod: dict) -> dict:
        calls.append("ours-modify")
        return {**pod, "ours": True}

    await hooks._chain(operator_pre, our_pre)(object())
    pod = await hooks._chain(operator_modify, our_modify)(object(), {"spec": {}})
    assert calls == ["operator-pre", "ours-pre", "operator-modify", "ours-modify"]
    assert pod == {"spec": {}, "operator": True, "ours": True}


def test_install_keeps_hooks_already_configured() -> None:
    c = Config()
    c.Spawner.pre_spawn_hook = mine = lambda spawner: None
    c.KubeSpawner.post_stop_hook = lambda spawner: None  # class-specific config wins
    hooks.install(c)
    assert c.Spawner.pre_spawn_hook is not mine
    assert c.Spawner.pre_spawn_hook.__name__ == "both"
    assert c.KubeSpawner.post_stop_hook.__name__ == "both"
    assert c.Spawner.post_stop_hook is hooks.post_stop_hook


def test_install_without_existing_hooks_sets_ours_directly() -> None:
    c = Config()
    hooks.install(c)
    assert c.Spawner.pre_spawn_hook is hooks.pre_spawn_hook
    assert c.KubeSpawner.modify_pod_hook is hooks.modify_pod_hook
    assert "pre_spawn_hook" not in c.KubeSpawner


def test_walltime_scopes_name_one_server() -> None:
    assert hooks.walltime_scopes("alice", "") == ["read:servers!server=alice/",
                                                  "delete:servers!server=alice/"]
    assert hooks.walltime_scopes("alice", "gpu") == ["read:servers!server=alice/gpu",
                                                     "delete:servers!server=alice/gpu"]


def test_walltime_plan_gives_the_token_to_the_sidecar_only() -> None:
    plan = SidecarPlan()
    hooks.add_walltime(plan, api_url="http://hub/hub/api", user="alice", server_name="",
                       limit=90, warn="1m,10s", token="TOKEN", port=4321)
    [sidecar] = plan.sidecars
    assert "TOKEN" not in str(sidecar.env)  # never an environment value
    assert sidecar.secret_files == {"WALLTIME_API_TOKEN_FILE": "walltime-token"}
    assert plan.secrets == {"walltime-token": "TOKEN"}
    assert sidecar.env["WALLTIME_LIMIT"] == "90"
    assert sidecar.env["WALLTIME_WARN"] == "60,10"
    assert plan.notebook_env == {"JUPYTERHUB_SIDECARS_WALLTIME_URL": "http://127.0.0.1:4321"}
    assert "TOKEN" not in str(plan.notebook_env)


def test_recorded_walltime_is_overwritten_and_removed_for_no_limit() -> None:
    class Db:
        commits = 0

        def commit(self) -> None:
            self.commits += 1

    class Spawner:
        def __init__(self) -> None:
            self.user_options = {"profile": "quick", "walltime_seconds": 999999,
                                 "idle_seconds": 999999}
            self.orm_spawner = type("Orm", (), {"user_options": dict(self.user_options)})()
            self.user = type("User", (), {"db": Db()})()

    spawner = Spawner()
    hooks.record_limits(spawner, 120.0, None)
    assert spawner.user_options == {"profile": "quick", "walltime_seconds": 120.0}
    assert spawner.orm_spawner.user_options == spawner.user_options
    hooks.record_limits(spawner, None, 60.0)
    assert spawner.user_options == {"profile": "quick", "idle_seconds": 60.0}
    hooks.record_limits(spawner, None, None)  # restarted with an unlimited profile
    assert spawner.user_options == {"profile": "quick"}
    assert spawner.orm_spawner.user_options == {"profile": "quick"}
    assert spawner.user.db.commits == 3
