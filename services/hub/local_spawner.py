"""The embedded default: sidecars as local processes beside a local notebook server.

It runs the same hooks as production (the hooks build a plan; this spawner runs it), so the
demo and the tests exercise the real JupyterHub flow without Kubernetes, with the same
separation a pod gives where one machine can:

- With ``c.Sidecars.identity_from_claims`` and a hub running as root, the notebook runs as the
  user's uid, gid and groups, in a mount namespace of its own with the user's passwd/group
  entries over ``/etc/passwd`` and ``/etc/group`` (services/hub/local_session.py), ``$HOME`` the
  home folder of the storage definition. Otherwise, like JupyterHub's
  ``SimpleLocalProcessSpawner``, as the hub's own OS user.
- Credentials reach the sidecars as files readable by root only (0600, in a 0700 folder of
  the server's); a sidecar started as root reads them, binds its socket, then drops to its
  own ids (walltime: nobody; tokenhelper: the notebook's user), which also makes it
  non-dumpable — the notebook cannot read its memory or environment even as the same uid.
- Every sidecar listens on a UNIX socket in the server's run folder (0700, the user's), not
  on the loopback every local user shares: only that user (and root) can reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Float, List, default

from services.contract import USAGE_SCOPE_ENV
from services.hub import local_cgroup
from services.hub.config import Sidecars
from services.hub.hooks import PLAN_ATTRIBUTE
from services.hub.local_cgroup import ServerCgroup
from services.hub.plan import Sidecar, SidecarPlan, UserSession
from services.hub.profile_access import Access, choose, visible
from services.hub.profiles import limits_summary, slug_of
from services.identity.nss import MERGE_SCRIPT
from services.runtime import sidecar_urls

# Only these variables of the hub's environment reach a sidecar: never the hub's secrets.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
PROFILE_OVERRIDES = ("mem_limit", "cpu_limit", "mem_guarantee", "cpu_guarantee", "environment")


class LocalSidecarSpawner(SimpleLocalProcessSpawner):  # type: ignore[misc]
    profile_list: List[dict[str, Any]] = List(
        config=True,
        help="KubeSpawner-style profiles ({display_name, slug, description, walltime, default}).")
    sidecar_stop_timeout = Float(5.0, config=True,
                                 help="Seconds a sidecar gets after SIGTERM before SIGKILL.")
    sidecar_start_timeout = Float(15.0, config=True,
                                  help="Seconds to wait for a sidecar to listen at start.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sidecar_pids: dict[str, int] = {}
        self.run_dir: str | None = None
        self.private_dir: str | None = None  # root's: credentials, passwd/group sources
        self.cgroup: ServerCgroup | None = None  # with LXCFS: the server's own
        self._processes: list[asyncio.subprocess.Process] = []

    @default("options_form")
    def _profiles_form(self) -> str:
        if not self.profile_list:
            return ""
        fallback = Sidecars(parent=self).walltime_default or None
        rows = []
        mine = visible(self.profile_list, Access.of(self.user))  # only what this user may use
        for index, profile in enumerate(mine):
            slug = html.escape(slug_of(profile))
            checked = "checked" if profile.get("default") or (
                index == 0 and not any(p.get("default") for p in mine)) else ""
            rows.append(
                f'<label class="list-group-item"><input type="radio" name="profile" '
                f'value="{slug}" {checked}> <strong>{html.escape(profile["display_name"])}'
                f'</strong> <span class="text-muted">({limits_summary(profile, fallback)})'
                f'</span><br><small>{html.escape(profile.get("description", ""))}</small>'
                f"</label>")
        return '<div class="list-group">' + "".join(rows) + "</div>"

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return {"profile": formdata.get("profile", [""])[0]}

    def allocate_run_dir(self) -> str:
        """The pod's emptyDir, locally: a private folder per server, removed at stop."""
        if self.run_dir is None:
            self.run_dir = tempfile.mkdtemp(prefix=f"sidecars-{self.user.name}-")
        return self.run_dir

    def allocate_sidecar_port(self, default: int) -> int:
        """Pods each have their own loopback; local servers share one, so ports must differ."""
        return int(random_port())

    def get_args(self) -> list[str]:
        args = list(super().get_args())
        if os.geteuid() == 0 and "--allow-root" not in args:
            args.append("--allow-root")  # the demo and CI run as root
        return args

    def get_env(self) -> dict[str, str]:
        env = dict(super().get_env())
        env.update(self._plan.notebook_env)
        for name, value in self._plan.notebook_env_defaults.items():
            env.setdefault(name, value)  # a profile's own environment wins
        if self.cgroup is None:
            # Local servers share the machine's cgroup: the status bar sums the process tree.
            env[USAGE_SCOPE_ENV] = "process-tree"
        session = self._session
        if session is not None:
            env.update({"USER": session.identity.username, "HOME": self.home_dir,
                        "LOGNAME": session.identity.username})
        return env

    @property
    def _session(self) -> UserSession | None:
        """The user's own identity, when the notebook can run as it (the hub is root)."""
        session = self._plan.session
        return session if session is not None and os.geteuid() == 0 else None

    @property
    def _plan(self) -> SidecarPlan:
        return getattr(self, PLAN_ATTRIBUTE, None) or SidecarPlan()

    async def start(self) -> Any:
        self._apply_profile_limits()
        plan = self._plan
        await asyncio.to_thread(self._prepare, plan)
        base_cmd: list[str] = list(self.cmd)  # type: ignore[has-type]
        try:
            self.cmd = self._launcher(self._session) + base_cmd
            address = await super().start()
        finally:
            self.cmd = base_cmd
        try:
            for sidecar in plan.sidecars:
                self.sidecar_pids[sidecar.name] = await self._start_sidecar(sidecar)
            await asyncio.gather(*(self._wait_listening(s) for s in plan.sidecars))
        except Exception:
            await self.stop(now=True)
            raise
        return address

    def _prepare(self, plan: SidecarPlan) -> None:
        """Folders and files before anything starts: the run folder (the user's, 0700), a
        folder of root's with each credential (0600) and the passwd/group to mount."""
        session = self._session
        owner = session.identity if session else None
        run_dir = Path(self.allocate_run_dir())
        if owner is not None:
            os.chown(run_dir, owner.uid, owner.gid)
        run_dir.chmod(0o700)
        private = Path(tempfile.mkdtemp(prefix=f"sidecars-{self.user.name}-private-"))
        self.private_dir = str(private)
        if plan.secret_refs:
            raise RuntimeError("credentials in Kubernetes Secrets (c.Sidecars.tokenhelper_"
                               "client_secret) need KubeSpawner; locally leave it empty")
        for key, value in plan.secrets.items():
            path = private / key
            path.touch(mode=0o600)
            path.write_text(value)
        for sidecar in plan.sidecars:
            if sidecar.url_env:
                socket = run_dir / f"{sidecar.name}.sock"
                plan.notebook_env[sidecar.url_env] = sidecar_urls.unix_url(str(socket))
        if session is not None:
            self._write_nss(session, private)
            self.home_dir = self._home_of(session)
        if plan.lxcfs is not None and os.geteuid() == 0:
            self.cgroup = self._own_cgroup()

    def _own_cgroup(self) -> ServerCgroup | None:
        """The server's own cgroup with the profile's limits, as a container has; without
        it LXCFS would show the hub's cgroup. A machine where cgroups cannot be written
        runs the server without one (and says so)."""
        name = f"{self.user.name}-{self.name or 'default'}"
        try:
            return local_cgroup.create(name, int(self.mem_limit) if self.mem_limit else None,
                                       float(self.cpu_limit) if self.cpu_limit else None)
        except OSError as exc:
            self.log.warning("no cgroup of its own for %s (%s): limits are not enforced and "
                             "LXCFS shows the hub's", self._log_name, exc)
            return None

    def _write_nss(self, session: UserSession, private: Path) -> None:
        """This machine's passwd/group with the user's entries (the pod's init container's
        script, on this machine's files)."""
        env = {**session.nss.env(session.identity), "NSS_DIR": str(private), "NSS_ETC": "/etc",
               "PATH": "/usr/bin:/bin"}
        subprocess.run(["/bin/sh", "-c", MERGE_SCRIPT], env=env, check=True,
                       capture_output=True)
        for name in ("passwd", "group"):
            (private / name).chmod(0o644)

    def _home_of(self, session: UserSession) -> str:
        """The home folder of the storage definition on this machine (hostPath volumes),
        created as the user's if it does not exist yet; else home_dir_template."""
        home_folder = next((f for f in session.folders if f.home), None)
        if home_folder is None or session.storage is None:
            return str(self.home_dir_template.format(username=self.user.name))
        home = Path(session.storage.local_folder(home_folder))
        if not home.exists():
            home.mkdir(parents=True, mode=0o700)
            os.chown(home, session.identity.uid, session.identity.gid)
        return str(home)

    def _launcher(self, session: UserSession | None) -> list[str]:
        """The root launcher (services/hub/local_session.py) in front of the server: into
        its cgroup, LXCFS and passwd/group mounted over the machine's, then the user's ids.
        Nothing where none of that applies."""
        args: list[str] = []
        if self.cgroup is not None:
            for procs in self.cgroup.procs_files():
                args += ["--cgroup-procs", procs]
        lxcfs = self._plan.lxcfs
        if lxcfs is not None and os.geteuid() == 0:
            for name in lxcfs.files:
                source = f"{lxcfs.root}/{name}"
                if Path(source).exists():
                    args += ["--bind", f"{source}:/{name}"]
                else:
                    self.log.warning("LXCFS has no %s: /%s shows the machine's", source, name)
        if session is not None:
            identity = session.identity
            assert self.private_dir is not None
            groups = ",".join(str(g) for g in (identity.gid, *identity.gids))
            args += ["--ids", f"{identity.uid}:{identity.gid}:{groups}", "--home",
                     self.home_dir, "--bind", f"{self.private_dir}/passwd:/etc/passwd",
                     "--bind", f"{self.private_dir}/group:/etc/group"]
        if not args:
            return []
        return [sys.executable, "-m", "services.hub.local_session", *args, "--"]

    def make_preexec_fn(self, name: str) -> Any:
        """Only the folder to start in: the launcher becomes the user and goes home."""
        home = self.home_dir

        def preexec() -> None:
            with contextlib.suppress(OSError):
                os.chdir(home)
        return preexec

    def _apply_profile_limits(self) -> None:
        """The limits and environment of the chosen profile, as KubeSpawner applies
        ``kubespawner_override``.

        Locally nothing enforces the limits; they reach the server as ``MEM_LIMIT``/
        ``CPU_LIMIT``, which the status bar shows, as in a pod.
        """
        profile = choose(self.profile_list, Access.of(self.user), self.user_options or {}) or {}
        override = profile.get("kubespawner_override") or {}
        for key in PROFILE_OVERRIDES:
            if key in override:
                setattr(self, key, override[key])

    async def _start_sidecar(self, sidecar: Sidecar) -> int:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(sidecar.env)
        assert self.run_dir is not None and self.private_dir is not None
        for setting, key in sidecar.secret_files.items():
            env[setting] = f"{self.private_dir}/{key}"
        prefix = sidecar.socket_setting.removesuffix("SOCKET")
        if sidecar.socket_setting:
            env[sidecar.socket_setting] = f"{self.run_dir}/{sidecar.name}.sock"
        session = self._session
        if os.geteuid() == 0 and prefix:
            user = session.identity if session else None
            if user is not None:
                env[f"{prefix}SOCKET_OWNER"] = str(user.uid)
            ids = self._sidecar_ids(sidecar, user)
            if ids:
                env[f"{prefix}RUN_AS"] = ids
        # A new session: the sidecar outlives a hub restart, as a container outlives the hub.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services", *sidecar.args,
            env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True, cwd="/")
        self._processes.append(process)
        self.log.info("started sidecar %s (pid %s) for %s", sidecar.name, process.pid,
                      self._log_name)
        return process.pid

    def _sidecar_ids(self, sidecar: Sidecar, user: Any) -> str:
        """``uid:gid`` a root-started sidecar drops to: the notebook user's for the
        tokenhelper (it writes the user's token file), the container default otherwise."""
        if sidecar.run_as_user is not None:
            if user is not None and sidecar.run_as_user == user.uid:
                return f"{user.uid}:{user.gid}"
            return "" if sidecar.run_as_user == 0 else \
                f"{sidecar.run_as_user}:{sidecar.run_as_user}"
        uid = Sidecars(parent=self).run_as_user
        return f"{uid}:{uid}"

    async def _wait_listening(self, sidecar: Sidecar) -> None:
        """Like a pod's startup: the server counts as started once its sidecars answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sidecar_start_timeout
        url = self._plan.notebook_env.get(sidecar.url_env) or \
            f"http://127.0.0.1:{sidecar.port}"
        async with sidecar_urls.async_client(url, timeout=2) as http:
            while loop.time() < deadline:
                try:
                    await http.get(sidecar_urls.http_url(url, "/healthz"))
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        self.log.warning("sidecar %s of %s not answering after %ss", sidecar.name,
                         self._log_name, self.sidecar_start_timeout)

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        await self._stop_sidecars()

    async def poll(self) -> int | None:
        """A notebook that died takes its sidecars with it, as a deleted pod would.

        JupyterHub does not call stop() for a server it finds dead, so this is the place.
        """
        status: int | None = await super().poll()
        if status is not None and (self.sidecar_pids or self.cgroup is not None):
            await self._stop_sidecars()
        return status

    async def _stop_sidecars(self) -> None:
        pids, self.sidecar_pids = self.sidecar_pids, {}
        await asyncio.gather(*(self._stop_pid(pid) for pid in pids.values()))
        self._processes = []
        for folder in (self.run_dir, self.private_dir):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        self.run_dir = self.private_dir = None
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None and not await asyncio.to_thread(cgroup.remove):
            self.log.warning("cgroup of %s still has processes: %s", self._log_name,
                             ", ".join(cgroup.folders))

    async def _stop_pid(self, pid: int) -> None:
        for sig, wait in ((signal.SIGTERM, self.sidecar_stop_timeout), (signal.SIGKILL, 1.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while loop.time() < deadline:
                if not _alive(pid):
                    return
                await asyncio.sleep(0.05)

    def get_state(self) -> dict[str, Any]:
        state = dict(super().get_state())
        if self.sidecar_pids:
            state["sidecar_pids"] = dict(self.sidecar_pids)
        if self.run_dir:
            state["run_dir"] = self.run_dir
        if self.private_dir:
            state["private_dir"] = self.private_dir
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.sidecar_pids = dict(state.get("sidecar_pids", {}))
        self.run_dir = state.get("run_dir")
        self.private_dir = state.get("private_dir")

    def clear_state(self) -> None:
        """Forget the notebook, not the sidecars: they are forgotten once stopped.

        LocalProcessSpawner.poll() clears the state as soon as the notebook is gone, before
        stop() or the hub's cleanup run; dropping the sidecar pids there would leak them.
        """
        pids, run_dir, private = self.sidecar_pids, self.run_dir, self.private_dir
        super().clear_state()
        self.sidecar_pids, self.run_dir, self.private_dir = pids, run_dir, private


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. asyncio's child watcher reaps our own children."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """An exited child not yet reaped still answers kill(pid, 0); procfs tells (no disk I/O)."""
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    return False
