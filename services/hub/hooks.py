"""Hub hooks: decide each server's sidecars, mint their least-privilege tokens, revoke them.

Wire them into Zero to JupyterHub with one ``hub.extraConfig`` snippet::

    from services.hub.hooks import install
    install(c)

and configure them under ``hub.config.Sidecars`` (see the README's configuration reference).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from traitlets import Bool, Dict, Integer, Unicode
from traitlets.config import Configurable

from services.hub.plan import ContainerSettings, Sidecar, SidecarPlan, apply_to_pod
from services.hub.profiles import (
    Profile,
    chosen_profile,
    profiles_of,
    slug_of,
    walltime_of,
    with_limits,
)
from services.metrics.local_source import PROFILE_ENV
from services.metrics.pods import (
    PROFILE_ANNOTATION,
    WALLTIME_DEADLINE_ANNOTATION,
    WALLTIME_LIMIT_ANNOTATION,
)
from services.metrics.quantities import GPU_LIMIT_ENV
from services.runtime.durations import parse_duration, parse_duration_list
from services.walltime.countdown import USER_OPTIONS_KEY
from services.walltime.settings import DEFAULT_PORT

log = logging.getLogger(__name__)

PLAN_ATTRIBUTE = "sidecar_plan"
TOKEN_NOTE_PREFIX = "jupyterhub-sidecars"  # noqa: S105 - a label, not a secret


class Sidecars(Configurable):
    """``c.Sidecars.*``: how the hooks equip each server."""

    walltime_default = Unicode(
        "", config=True,
        help="Walltime for servers whose profile sets none (90s, 30m, 12h, 1d); empty = no limit.")
    walltime_warn = Unicode(
        "10m,1m", config=True, help="Warn the user this long before the end (comma-separated).")
    walltime_token_margin = Unicode(
        "10m", config=True,
        help="The walltime token expires this long after the limit (covers slow stops).")
    walltime_port = Integer(
        DEFAULT_PORT, config=True, help="Pod-local port of the walltime sidecar.")
    image = Unicode(
        "ghcr.io/jupyterhub-sidecars/sidecars:0.1.0", config=True,
        help="Image of the sidecar containers (KubeSpawner only).")
    image_pull_policy = Unicode("IfNotPresent", config=True, help="imagePullPolicy of sidecars.")
    run_as_user = Integer(65534, config=True, help="UID the sidecar containers run as.")
    tokenhelper_enabled = Bool(
        False, config=True,
        help="Add the tokenhelper: access tokens from auth_state for the notebook.")
    tokenhelper_service = Unicode(
        "tokenhelper", config=True,
        help="JupyterHub service that owns the tokenhelper tokens (role: admin:auth_state, "
             "read:users:name; plus admin:users with write-back).")
    tokenhelper_oidc_issuer = Unicode(
        "", config=True, help="OIDC issuer URL the tokenhelper refreshes at.")
    tokenhelper_write_back = Bool(
        False, config=True,
        help="Let the tokenhelper write rotated refresh tokens to auth_state (admin:users).")
    tokenhelper_min_valid = Unicode(
        "60s", config=True, help="Refresh when the access token has less than this left.")
    tokenhelper_port = Integer(8767, config=True, help="Pod-local port of the tokenhelper.")
    run_dir = Unicode(
        "/run/sidecars", config=True,
        help="Shared folder (emptyDir) of the notebook and the sidecars (KubeSpawner).")
    resources = Dict(
        {"requests": {"cpu": "5m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        config=True, help="Kubernetes resources of each sidecar container.")

    def container_settings(self) -> ContainerSettings:
        return ContainerSettings(self.image, self.image_pull_policy, dict(self.resources),
                                 self.run_as_user)


def token_note(service: str, user: str, server_name: str) -> str:
    """Marks a minted token so the stop hook (even after a hub restart) finds and revokes it."""
    return f"{TOKEN_NOTE_PREFIX} {service} for {user}/{server_name}"


def tokenhelper_scopes(user: str, write_back: bool) -> list[str]:
    """Read (and, with write-back, store) one user's auth_state; nothing else."""
    scopes = [f"admin:auth_state!user={user}", f"read:users:name!user={user}"]
    if write_back:
        scopes.append(f"admin:users!user={user}")
    return scopes


def walltime_scopes(user: str, server_name: str) -> list[str]:
    """Exactly what the walltime sidecar needs: see and stop this one server."""
    target = f"server={user}/{server_name}"
    return [f"read:servers!{target}", f"delete:servers!{target}"]


def add_walltime(plan: SidecarPlan, *, api_url: str, user: str, server_name: str,
                 limit: float, warn: str, token: str, port: int) -> None:
    """The walltime container: the token goes to it alone; the notebook learns its URL."""
    plan.sidecars.append(Sidecar(
        name="walltime",
        args=["walltime"],
        port=port,
        env={
            "JUPYTERHUB_API_URL": api_url,
            "JUPYTERHUB_USER": user,
            "JUPYTERHUB_SERVER_NAME": server_name,
            "WALLTIME_API_TOKEN": token,
            "WALLTIME_LIMIT": f"{limit:g}",
            "WALLTIME_WARN": ",".join(f"{w:g}" for w in parse_duration_list(warn)),
            "WALLTIME_PORT": str(port),
        },
    ))
    plan.notebook_env["JUPYTERHUB_SIDECARS_WALLTIME_URL"] = f"http://127.0.0.1:{port}"


async def pre_spawn_hook(spawner: Any) -> None:
    """Plan the sidecars of the server about to start (``Spawner.pre_spawn_hook``)."""
    config = Sidecars(parent=spawner)
    user, server_name = spawner.user.name, spawner.name
    plan = SidecarPlan()
    profile = chosen_profile(await profiles_of(spawner), spawner.user_options or {})
    limit = walltime_of(profile, config.walltime_default or None)
    revoke_tokens(spawner, "walltime")
    record_walltime(spawner, limit)
    describe_for_metrics(plan, profile, limit, spawner.orm_spawner.started)
    if limit is not None:
        token = spawner.user.new_api_token(
            note=token_note("walltime", user, server_name),
            scopes=walltime_scopes(user, server_name),
            expires_in=int(limit + parse_duration(config.walltime_token_margin)),
        )
        add_walltime(plan, api_url=spawner.hub.api_url, user=user, server_name=server_name,
                     limit=limit, warn=config.walltime_warn, token=token,
                     port=_port_for(spawner, config.walltime_port))
        log.info("walltime %ss for %s/%s", limit, user, server_name)
    revoke_tokens(spawner, "tokenhelper")
    if config.tokenhelper_enabled:
        add_tokenhelper(plan, spawner, config, limit)
    setattr(spawner, PLAN_ATTRIBUTE, plan)


def add_tokenhelper(plan: SidecarPlan, spawner: Any, config: Sidecars,
                    limit: float | None) -> None:
    """The tokenhelper container, with a token of the tokenhelper service for this user."""
    from jupyterhub import orm

    user, server_name = spawner.user.name, spawner.name
    service = orm.Service.find(spawner.user.db, config.tokenhelper_service)
    if service is None:
        raise RuntimeError(
            f"c.Sidecars.tokenhelper_enabled needs a JupyterHub service named "
            f"{config.tokenhelper_service!r} with a role granting admin:auth_state and "
            "read:users:name (see the README)")
    authenticator = spawner.authenticator
    if not config.tokenhelper_oidc_issuer or not getattr(authenticator, "client_id", None):
        raise RuntimeError("the tokenhelper needs c.Sidecars.tokenhelper_oidc_issuer and an "
                           "OAuthenticator with client_id/client_secret and enable_auth_state")
    margin = parse_duration(config.walltime_token_margin)
    token = service.new_api_token(
        note=token_note("tokenhelper", user, server_name),
        scopes=tokenhelper_scopes(user, config.tokenhelper_write_back),
        expires_in=int(limit + margin) if limit else None,
    )
    add_tokenhelper_sidecar(
        plan, api_url=spawner.hub.api_url, user=user, token=token,
        issuer=config.tokenhelper_oidc_issuer, client_id=authenticator.client_id,
        client_secret=authenticator.client_secret, run_dir=_run_dir_for(spawner, config.run_dir),
        uid=_uid_for(spawner), port=_port_for(spawner, config.tokenhelper_port),
        min_valid=config.tokenhelper_min_valid, write_back=config.tokenhelper_write_back)


def add_tokenhelper_sidecar(plan: SidecarPlan, *, api_url: str, user: str, token: str,
                            issuer: str, client_id: str, client_secret: str, run_dir: str,
                            uid: int, port: int, min_valid: str, write_back: bool) -> None:
    """The tokenhelper container: hub token and client secret go to it alone; it runs as the
    notebook's uid so the token file it writes is the user's; the notebook gets the paths."""
    plan.sidecars.append(Sidecar(
        name="tokenhelper",
        args=["tokenhelper"],
        port=port,
        env={
            "JUPYTERHUB_API_URL": api_url,
            "JUPYTERHUB_USER": user,
            "TOKENHELPER_API_TOKEN": token,
            "TOKENHELPER_OIDC_ISSUER": issuer,
            "TOKENHELPER_CLIENT_ID": client_id,
            "TOKENHELPER_CLIENT_SECRET": client_secret,
            "TOKENHELPER_RUN_DIR": run_dir,
            "TOKENHELPER_UID": str(uid),
            "TOKENHELPER_MIN_VALID": min_valid,
            "TOKENHELPER_WRITE_BACK": "true" if write_back else "false",
            "TOKENHELPER_PORT": str(port),
        },
        run_as_user=uid,
        mounts_shared_dir=True,
    ))
    plan.shared_dir = run_dir
    plan.notebook_env.update({
        "BEARER_TOKEN_FILE": f"{run_dir}/bt_u{uid}",
        "OIDC_SOCK": f"{run_dir}/oidc-agent.sock",
        "JUPYTERHUB_SIDECARS_ARC_CERT": f"{run_dir}/arc-placeholder-cert.pem",
        "JUPYTERHUB_SIDECARS_ARC_KEY": f"{run_dir}/arc-placeholder-key.pem",
        "JUPYTERHUB_SIDECARS_TOKEN_URL": f"http://127.0.0.1:{port}",
    })


def describe_for_metrics(plan: SidecarPlan, profile: Profile | None, limit: float | None,
                         started: datetime | None) -> None:
    """Tell the metrics agent (pod annotations) and the notebook (env) the profile and walltime.

    The deadline is the walltime sidecar's own: the hub's ``started`` plus the limit.
    """
    slug = slug_of(profile) if profile else ""
    plan.notebook_env[PROFILE_ENV] = slug
    if profile and profile.get("gpu_memory"):
        plan.notebook_env[GPU_LIMIT_ENV] = str(profile["gpu_memory"])
    plan.pod_annotations[PROFILE_ANNOTATION] = slug
    if limit is not None and started is not None:
        if started.tzinfo is None:  # the hub's database keeps naive UTC
            started = started.replace(tzinfo=UTC)
        deadline = started + timedelta(seconds=limit)
        plan.pod_annotations[WALLTIME_LIMIT_ANNOTATION] = f"{limit:g}"
        plan.pod_annotations[WALLTIME_DEADLINE_ANNOTATION] = deadline.isoformat()


def post_stop_hook(spawner: Any) -> None:
    """Revoke every token minted for this server (``Spawner.post_stop_hook``)."""
    revoke_tokens(spawner, "walltime")
    revoke_tokens(spawner, "tokenhelper")


def modify_pod_hook(spawner: Any, pod: Any) -> Any:
    """Add the planned sidecars to the pod (``KubeSpawner.modify_pod_hook``)."""
    plan = getattr(spawner, PLAN_ATTRIBUTE, None)
    if plan is None:
        return pod
    return apply_to_pod(plan, pod, Sidecars(parent=spawner).container_settings())


def revoke_tokens(spawner: Any, service: str) -> int:
    """Delete the tokens minted for ``service`` on this server (user- or service-owned)."""
    from jupyterhub import orm

    note = token_note(service, spawner.user.name, spawner.name)
    stale = spawner.user.db.query(orm.APIToken).filter(orm.APIToken.note == note).all()
    for token in stale:
        spawner.user.db.delete(token)
    if stale:
        spawner.user.db.commit()
        log.info("revoked %d %s token(s) of %s/%s", len(stale), service, spawner.user.name,
                 spawner.name)
    return len(stale)


def record_walltime(spawner: Any, limit: float | None) -> None:
    """Keep the enforced limit in the server's user_options, where the backstop reads it.

    Always overwritten (or removed, for no limit) here: a value a user sends when starting a
    server, or one left from the server's previous start, has no effect.
    """
    options = {k: v for k, v in (spawner.user_options or {}).items() if k != USER_OPTIONS_KEY}
    if limit is not None:
        options[USER_OPTIONS_KEY] = limit
    spawner.user_options = options
    spawner.orm_spawner.user_options = dict(options)
    spawner.user.db.commit()


def _run_dir_for(spawner: Any, default: str) -> str:
    allocate = getattr(spawner, "allocate_run_dir", None)
    return str(allocate()) if allocate else default


def _uid_for(spawner: Any) -> int:
    """The notebook's uid: KubeSpawner's ``uid`` (Z2JH singleuser.uid), else our own."""
    uid = getattr(spawner, "uid", None)
    return int(uid) if isinstance(uid, int) else os.geteuid()


def _port_for(spawner: Any, default: int) -> int:
    allocate = getattr(spawner, "allocate_sidecar_port", None)
    return int(allocate(default)) if allocate else default


def _chain(first: Any, second: Any) -> Any:
    """Run an operator's existing hook, then ours."""
    if first is None:
        return second

    async def both(spawner: Any, *args: Any) -> Any:
        result = first(spawner, *args)
        if hasattr(result, "__await__"):
            result = await result
        if args:  # modify_pod_hook passes the pod along
            args = (result if result is not None else args[0],)
        second_result = second(spawner, *args)
        if hasattr(second_result, "__await__"):
            second_result = await second_result
        return second_result

    return both


def install(c: Any) -> None:
    """Install the hooks into a JupyterHub config object, keeping hooks already set there."""
    for klass in ("Spawner", "KubeSpawner"):
        section = c[klass]
        if klass == "Spawner" or "pre_spawn_hook" in section:
            section.pre_spawn_hook = _chain(section.get("pre_spawn_hook"), pre_spawn_hook)
        if klass == "Spawner" or "post_stop_hook" in section:
            section.post_stop_hook = _chain(section.get("post_stop_hook"), post_stop_hook)
    c.KubeSpawner.modify_pod_hook = _chain(c.KubeSpawner.get("modify_pod_hook"), modify_pod_hook)
    # The spawn page shows each profile's limits, generated from the keys that set them.
    profiles = c.KubeSpawner.get("profile_list")
    if isinstance(profiles, list):
        default = c.Sidecars.get("walltime_default") or None
        c.KubeSpawner.profile_list = [with_limits(p, default) for p in profiles]
