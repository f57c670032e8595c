"""Hub hooks: decide each server's sidecars, mint their least-privilege tokens, revoke them.

Wire them into Zero to JupyterHub with one ``hub.extraConfig`` snippet::

    from services.hub.hooks import install
    install(c)

and configure them under ``hub.config.Sidecars`` (see the README's configuration reference).
"""

from __future__ import annotations

import logging
import math
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from services.contract import (
    ACTIVITY_INTERVAL_ENV,
    AGENT_SOCKET_NAME,
    ARC_CERT_ENV,
    ARC_CERT_NAME,
    ARC_KEY_ENV,
    ARC_KEY_NAME,
    BEARER_TOKEN_FILE_ENV,
    CLIENT_SECRET_FILE_NAME,
    DISK_LIMIT_ENV,
    GPU_LIMIT_ENV,
    IDLE_USER_OPTION,
    NOTEBOOK_TOKEN_KEY,
    OIDC_SOCK_ENV,
    PROFILE_ANNOTATION,
    PROFILE_ENV,
    TOKEN_URL_ENV,
    TOKENHELPER_TOKEN_KEY,
    WALLTIME_DEADLINE_ANNOTATION,
    WALLTIME_LIMIT_ANNOTATION,
    WALLTIME_TOKEN_KEY,
    WALLTIME_URL_ENV,
    WALLTIME_USER_OPTION,
    bearer_token_name,
)
from services.hub.compute_profiles import build_profiles
from services.hub.config import Sidecars
from services.hub.plan import Sidecar, SidecarPlan, UserSession
from services.hub.pod import apply_to_pod, secret_manifest, secret_name
from services.hub.profile_access import Access, GatedProfiles, all_profiles_of, choose, is_gated
from services.hub.profiles import (
    Profile,
    ProfileError,
    disk_limit_of,
    idle_of,
    slug_of,
    walltime_of,
    with_limits,
)
from services.hub.user_identity import NoIdentity, identity_of
from services.identity.nss import entries_for
from services.runtime.durations import parse_duration, parse_duration_list

log = logging.getLogger(__name__)

PLAN_ATTRIBUTE = "sidecar_plan"
TOKEN_NOTE_PREFIX = "jupyterhub-sidecars"  # noqa: S105 - a label, not a secret
__all__ = ["Sidecars", "install"]


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
                 limit: float | None, warn: str, token: str, port: int,
                 idle: float | None = None, idle_warn: str = "10m,1m",
                 activity_interval: str = "30s") -> None:
    """The walltime container (walltime and idle stop): the token goes to it alone (a file);
    the notebook learns its URL and, with an idle limit, reports activity more often."""
    plan.secrets[WALLTIME_TOKEN_KEY] = token
    env = {
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": server_name,
        "WALLTIME_WARN": ",".join(f"{w:g}" for w in parse_duration_list(warn)),
        "WALLTIME_PORT": str(port),
    }
    if limit is not None:
        env["WALLTIME_LIMIT"] = f"{limit:g}"
    if idle is not None:
        interval = parse_duration(activity_interval)
        env.update({"WALLTIME_IDLE": f"{idle:g}",
                    "WALLTIME_IDLE_WARN": ",".join(f"{w:g}"
                                                   for w in parse_duration_list(idle_warn)),
                    "WALLTIME_ACTIVITY_LAG": f"{interval:g}"})
        plan.notebook_env[ACTIVITY_INTERVAL_ENV] = str(max(1, round(interval)))
    plan.sidecars.append(Sidecar(
        name="walltime",
        args=["walltime"],
        port=port,
        env=env,
        secret_files={"WALLTIME_API_TOKEN_FILE": WALLTIME_TOKEN_KEY},
        socket_setting="WALLTIME_SOCKET",
        url_env=WALLTIME_URL_ENV,
    ))
    plan.notebook_env[WALLTIME_URL_ENV] = f"http://127.0.0.1:{port}"


async def pre_spawn_hook(spawner: Any) -> None:
    """Plan the server about to start (``Spawner.pre_spawn_hook``).

    Everything that can refuse the spawn (the user's identity, the profile) is decided before
    any token is minted, so a refused spawn leaves nothing behind.
    """
    config = Sidecars(parent=spawner)
    user, server_name = spawner.user.name, spawner.name
    plan = SidecarPlan()
    if config.identity_from_claims:
        plan.session = await _session_for(spawner, config)
    try:
        profile = choose(await all_profiles_of(spawner), Access.of(spawner.user),
                         spawner.user_options or {})
    except ProfileError as exc:
        raise _refused(str(exc), reason="profile") from None
    try:
        limit = walltime_of(profile, config.walltime_default or None)
        idle = idle_of(profile, config.idle_default or None)
        disk_limit_of(profile)  # refuse a wrong size before anything is created
    except ProfileError as exc:
        raise _refused(str(exc), reason="profile") from None
    revoke_tokens(spawner, "walltime")
    record_limits(spawner, limit, idle)
    describe_for_metrics(plan, profile, limit, spawner.orm_spawner.started)
    plan.notebook_env_defaults.update(thread_env(cpu_limit_of(profile, spawner)))
    try:
        plan.lxcfs = config.lxcfs_plan()
    except ValueError as exc:
        raise _refused(str(exc), reason="config") from None
    if limit is not None or idle is not None:
        token = spawner.user.new_api_token(
            note=token_note("walltime", user, server_name),
            scopes=walltime_scopes(user, server_name),
            # Idle only: no end is known; the stop hook revokes the token.
            expires_in=int(limit + parse_duration(config.walltime_token_margin))
            if limit is not None else None,
        )
        add_walltime(plan, api_url=spawner.hub.api_url, user=user, server_name=server_name,
                     limit=limit, warn=config.walltime_warn, token=token,
                     port=_port_for(spawner, config.walltime_port),
                     idle=idle, idle_warn=config.idle_warn,
                     activity_interval=config.activity_interval)
        log.info("walltime %ss, idle %ss for %s/%s", limit, idle, user, server_name)
    revoke_tokens(spawner, "tokenhelper")
    if config.tokenhelper_enabled:
        add_tokenhelper(plan, spawner, config, limit)
    setattr(spawner, PLAN_ATTRIBUTE, plan)


async def _session_for(spawner: Any, config: Sidecars) -> UserSession:
    """The user's own identity, passwd/group entries and folders, or a refused spawn."""
    try:
        mapping = config.claim_mapping()
        storage = config.storage_definition()
    except ValueError as exc:  # the operator's configuration: a clear message, no spawn
        raise _refused(f"the hub's identity or storage settings are wrong: {exc}",
                       reason="configuration") from None
    try:
        identity = identity_of(await spawner.user.get_auth_state(), mapping)
    except NoIdentity as exc:
        raise _refused(str(exc), reason="identity") from None
    folders = storage.folders(identity) if storage else []
    home_folder = next((f for f in folders if f.home), None)
    home = home_folder.path if home_folder else None
    nss = entries_for(identity, mapping.group_gids, home or f"/home/{identity.username}",
                      config.nss_shell)
    log.info("%s/%s runs as uid %d gid %d groups %s", spawner.user.name, spawner.name,
             identity.uid, identity.gid, list(identity.gids))
    return UserSession(identity, nss, storage, folders, home)


def _refused(message: str, reason: str) -> Exception:
    """What JupyterHub shows on the spawn page as "Spawn failed: <message>"."""
    try:  # JupyterHub 5.4+: a policy refusal, logged without a traceback
        from jupyterhub.spawner import SpawnException
    except ImportError:
        from tornado import web

        error = web.HTTPError(403, log_message=message)
        error.jupyterhub_message = message  # type: ignore[attr-defined]
        return error
    return SpawnException(message, reason=reason, status_code=403)  # type: ignore[no-any-return]


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
    if config.tokenhelper_client_secret:
        name, _, key = config.tokenhelper_client_secret.partition(":")
        if not name or not key:
            raise RuntimeError(f"c.Sidecars.tokenhelper_client_secret="
                               f"{config.tokenhelper_client_secret!r}: expected name:key")
        plan.secret_refs[CLIENT_SECRET_FILE_NAME] = (name, key)
    else:
        plan.secrets[CLIENT_SECRET_FILE_NAME] = authenticator.client_secret
    margin = parse_duration(config.walltime_token_margin)
    token = service.new_api_token(
        note=token_note("tokenhelper", user, server_name),
        scopes=tokenhelper_scopes(user, config.tokenhelper_write_back),
        expires_in=int(limit + margin) if limit else None,
    )
    uid = plan.session.identity.uid if plan.session else _uid_for(spawner)
    add_tokenhelper_sidecar(
        plan, api_url=spawner.hub.api_url, user=user, token=token,
        issuer=config.tokenhelper_oidc_issuer, client_id=authenticator.client_id,
        run_dir=_run_dir_for(spawner, config.run_dir), uid=uid,
        port=_port_for(spawner, config.tokenhelper_port),
        min_valid=config.tokenhelper_min_valid, write_back=config.tokenhelper_write_back,
        audience_parameter=config.tokenhelper_audience_parameter)
    if config.tokenhelper_metrics_port:
        sidecar = next(s for s in plan.sidecars if s.name == "tokenhelper")
        sidecar.metrics_port = config.tokenhelper_metrics_port
        plan.pod_annotations.update({"prometheus.io/scrape": "true",
                                     "prometheus.io/port": str(config.tokenhelper_metrics_port),
                                     "prometheus.io/path": "/metrics"})


def add_tokenhelper_sidecar(plan: SidecarPlan, *, api_url: str, user: str, token: str,
                            issuer: str, client_id: str, run_dir: str, uid: int, port: int,
                            min_valid: str, write_back: bool,
                            audience_parameter: str = "resource") -> None:
    """The tokenhelper container: its hub token and the client secret reach it alone (files
    from the server's Secret); it runs as the notebook's uid so the token file it writes is
    the user's; the notebook gets the paths."""
    plan.secrets[TOKENHELPER_TOKEN_KEY] = token
    plan.sidecars.append(Sidecar(
        name="tokenhelper",
        args=["tokenhelper"],
        port=port,
        env={
            "JUPYTERHUB_API_URL": api_url,
            "JUPYTERHUB_USER": user,
            "TOKENHELPER_OIDC_ISSUER": issuer,
            "TOKENHELPER_CLIENT_ID": client_id,
            "TOKENHELPER_RUN_DIR": run_dir,
            "TOKENHELPER_UID": str(uid),
            "TOKENHELPER_MIN_VALID": min_valid,
            "TOKENHELPER_WRITE_BACK": "true" if write_back else "false",
            "TOKENHELPER_AUDIENCE_PARAMETER": audience_parameter,
            "TOKENHELPER_PORT": str(port),
        },
        secret_files={"TOKENHELPER_API_TOKEN_FILE": TOKENHELPER_TOKEN_KEY,
                      "TOKENHELPER_CLIENT_SECRET_FILE": CLIENT_SECRET_FILE_NAME},
        run_as_user=uid,
        mounts_shared_dir=True,
        socket_setting="TOKENHELPER_SOCKET",
        url_env=TOKEN_URL_ENV,
    ))
    plan.shared_dir = run_dir
    plan.notebook_env.update({
        BEARER_TOKEN_FILE_ENV: f"{run_dir}/{bearer_token_name(uid)}",
        OIDC_SOCK_ENV: f"{run_dir}/{AGENT_SOCKET_NAME}",
        ARC_CERT_ENV: f"{run_dir}/{ARC_CERT_NAME}",
        ARC_KEY_ENV: f"{run_dir}/{ARC_KEY_NAME}",
        TOKEN_URL_ENV: f"http://127.0.0.1:{port}",
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
    disk_limit = disk_limit_of(profile)
    if disk_limit is not None:
        plan.notebook_env[DISK_LIMIT_ENV] = str(disk_limit)
    plan.pod_annotations[PROFILE_ANNOTATION] = slug
    if limit is not None and started is not None:
        if started.tzinfo is None:  # the hub's database keeps naive UTC
            started = started.replace(tzinfo=UTC)
        deadline = started + timedelta(seconds=limit)
        plan.pod_annotations[WALLTIME_LIMIT_ANNOTATION] = f"{limit:g}"
        plan.pod_annotations[WALLTIME_DEADLINE_ANNOTATION] = deadline.isoformat()


# Thread pools that size themselves from the node's cores, not the container's CPU limit.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMEXPR_MAX_THREADS", "NUMBA_NUM_THREADS")


def thread_env(cpu_limit: float | None) -> dict[str, str]:
    """One thread per CPU of the limit (rounded up, at least 1), so numpy on a 64-core node
    does not start 64 threads in a 2-CPU container; nothing without a limit."""
    if not cpu_limit or cpu_limit <= 0:
        return {}
    threads = str(max(1, math.ceil(cpu_limit)))
    return dict.fromkeys(THREAD_ENV, threads)


def cpu_limit_of(profile: Profile | None, spawner: Any) -> float | None:
    """The profile's ``cpu_limit`` (applied by KubeSpawner after this hook), else the
    spawner's own."""
    override = (profile or {}).get("kubespawner_override") or {}
    value = override.get("cpu_limit", getattr(spawner, "cpu_limit", None))
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


async def post_stop_hook(spawner: Any) -> None:
    """Revoke every token minted for this server and delete its Secret
    (``Spawner.post_stop_hook``; also after a hub restart: both are found by name)."""
    revoke_tokens(spawner, "walltime")
    revoke_tokens(spawner, "tokenhelper")
    await delete_server_secret(spawner)


def modify_pod_hook(spawner: Any, pod: Any) -> Any:
    """Add the plan to the pod (``KubeSpawner.modify_pod_hook``)."""
    plan = getattr(spawner, PLAN_ATTRIBUTE, None)
    if plan is None:
        return pod
    if plan.secrets and getattr(spawner, "api_token", None):
        plan.secrets[NOTEBOOK_TOKEN_KEY] = spawner.api_token  # by reference, not by value
    return apply_to_pod(plan, pod, Sidecars(parent=spawner).container_settings(),
                        secret_name(spawner.pod_name))


async def after_pod_created_hook(spawner: Any, pod: dict[str, Any]) -> None:
    """Create the server's Secret, owned by the pod (``KubeSpawner.after_pod_created_hook``).

    The pod's containers wait for the Secret's files; if the hub dies, the garbage collector
    deletes the Secret with the pod. An error here makes KubeSpawner remove the pod.
    """
    plan = getattr(spawner, PLAN_ATTRIBUTE, None)
    if plan is None or not plan.secrets:
        return
    from kubernetes_asyncio.client.exceptions import ApiException

    manifest = secret_manifest(plan, secret_name(spawner.pod_name), pod)
    try:
        await spawner.api.create_namespaced_secret(spawner.namespace, manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
        # Left from a start the hub did not see through: replace it (secrets cannot be
        # patched with the hub's Role, and this one must be owned by the new pod).
        await delete_server_secret(spawner)
        await spawner.api.create_namespaced_secret(spawner.namespace, manifest)


async def delete_server_secret(spawner: Any) -> None:
    """The server's Secret, gone (KubeSpawner only; a missing one is fine)."""
    if not _on_kubernetes(spawner):
        return
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        await spawner.api.delete_namespaced_secret(secret_name(spawner.pod_name),
                                                   spawner.namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _on_kubernetes(spawner: Any) -> bool:
    return hasattr(spawner, "pod_name") and hasattr(spawner, "api")


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


def record_limits(spawner: Any, limit: float | None, idle: float | None) -> None:
    """Keep the enforced limits in the server's user_options, where the backstop reads them.

    Always overwritten (or removed, for no limit) here: a value a user sends when starting a
    server, or one left from the server's previous start, has no effect.
    """
    options = {k: v for k, v in (spawner.user_options or {}).items()
               if k not in (WALLTIME_USER_OPTION, IDLE_USER_OPTION)}
    if limit is not None:
        options[WALLTIME_USER_OPTION] = limit
    if idle is not None:
        options[IDLE_USER_OPTION] = idle
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
    c.KubeSpawner.after_pod_created_hook = _chain(c.KubeSpawner.get("after_pod_created_hook"),
                                                  after_pod_created_hook)
    # Profiles built from compute instances and profiles (seed 004's shape), where given.
    entries = c.Sidecars.get("profiles")
    if entries:
        built = build_profiles(dict(c.Sidecars.get("compute_instances") or {}), list(entries))
        c.KubeSpawner.profile_list = built
        c.LocalSidecarSpawner.profile_list = built
    # The spawn page shows each profile's limits, generated from the keys that set them.
    profiles = c.KubeSpawner.get("profile_list")
    if isinstance(profiles, list):
        default = c.Sidecars.get("walltime_default") or None
        idle_default = c.Sidecars.get("idle_default") or None
        shown = [with_limits(p, default, idle_default) for p in profiles]
        # Profiles that need a role or group: each user is offered only their own.
        c.KubeSpawner.profile_list = GatedProfiles(shown) if is_gated(shown) else shown
