"""The embedded default: sidecars as local processes beside a local notebook server.

It runs the same hooks as production (the hooks build a plan; this spawner runs it), so the
demo and the tests exercise the real JupyterHub flow without Kubernetes. Like JupyterHub's
``SimpleLocalProcessSpawner`` it runs every server as the hub's own OS user: for one machine,
never for production.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Float, List, default

from services.hub.hooks import PLAN_ATTRIBUTE, Sidecars
from services.hub.plan import Sidecar, SidecarPlan
from services.hub.profiles import chosen_profile, limits_summary, slug_of
from services.metrics.status import SCOPE_ENV

# Only these variables of the hub's environment reach a sidecar: never the hub's secrets.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
PROFILE_LIMITS = ("mem_limit", "cpu_limit", "mem_guarantee", "cpu_guarantee")


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
        self._processes: list[asyncio.subprocess.Process] = []

    @default("options_form")
    def _profiles_form(self) -> str:
        if not self.profile_list:
            return ""
        fallback = Sidecars(parent=self).walltime_default or None
        rows = []
        for index, profile in enumerate(self.profile_list):
            slug = html.escape(slug_of(profile))
            checked = "checked" if profile.get("default") or (
                index == 0 and not any(p.get("default") for p in self.profile_list)) else ""
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
        # Local servers share the machine's cgroup: the status bar sums the process tree.
        env[SCOPE_ENV] = "process-tree"
        return env

    @property
    def _plan(self) -> SidecarPlan:
        return getattr(self, PLAN_ATTRIBUTE, None) or SidecarPlan()

    async def start(self) -> Any:
        self._apply_profile_limits()
        address = await super().start()
        try:
            for sidecar in self._plan.sidecars:
                self.sidecar_pids[sidecar.name] = await self._start_sidecar(sidecar)
            await asyncio.gather(*(self._wait_listening(s) for s in self._plan.sidecars))
        except Exception:
            await self.stop(now=True)
            raise
        return address

    def _apply_profile_limits(self) -> None:
        """The limits of the chosen profile, as KubeSpawner applies ``kubespawner_override``.

        Locally nothing enforces them; they reach the server as ``MEM_LIMIT``/``CPU_LIMIT``,
        which the status bar shows, as in a pod.
        """
        profile = chosen_profile(self.profile_list, self.user_options or {}) or {}
        override = profile.get("kubespawner_override") or {}
        for key in PROFILE_LIMITS:
            if key in override:
                setattr(self, key, override[key])

    async def _start_sidecar(self, sidecar: Sidecar) -> int:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(sidecar.env)
        # A new session: the sidecar outlives a hub restart, as a container outlives the hub.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services", *sidecar.args,
            env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True, cwd="/")
        self._processes.append(process)
        self.log.info("started sidecar %s (pid %s) for %s", sidecar.name, process.pid,
                      self._log_name)
        return process.pid

    async def _wait_listening(self, sidecar: Sidecar) -> None:
        """Like a pod's startup: the server counts as started once its sidecars answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sidecar_start_timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while loop.time() < deadline:
                try:
                    await http.get(f"http://127.0.0.1:{sidecar.port}/healthz")
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
        if status is not None and self.sidecar_pids:
            await self._stop_sidecars()
        return status

    async def _stop_sidecars(self) -> None:
        pids, self.sidecar_pids = self.sidecar_pids, {}
        await asyncio.gather(*(self._stop_pid(pid) for pid in pids.values()))
        self._processes = []
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

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
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.sidecar_pids = dict(state.get("sidecar_pids", {}))
        self.run_dir = state.get("run_dir")

    def clear_state(self) -> None:
        """Forget the notebook, not the sidecars: they are forgotten once stopped.

        LocalProcessSpawner.poll() clears the state as soon as the notebook is gone, before
        stop() or the hub's cleanup run; dropping the sidecar pids there would leak them.
        """
        pids, run_dir = self.sidecar_pids, self.run_dir
        super().clear_state()
        self.sidecar_pids, self.run_dir = pids, run_dir


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
