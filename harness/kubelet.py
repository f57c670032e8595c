"""A kubelet double for the gateway's tests: it runs each admitted file server pod as a real
``kubepie fileserver`` process, the way a container runtime would: the container's env, the
pod's securityContext ids (as root), its volumeMounts resolved to host folders, a pod IP of
its own on loopback (127.0.0.N), then reports the pod Running and Ready."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.kube_api import KubeApi
from harness.tools import VENV_BIN


@dataclass
class Kubelet:
    api: KubeApi
    volumes: dict[str, Path]                 # pod volume name → host folder
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    secret_dirs: list[Path] = field(default_factory=list)
    next_ip: int = 2

    async def run_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        await self.stop_pod(pod)  # a pod of the same name before it: gone by now
        container = spec["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        mounts = []
        for mount in container["volumeMounts"]:
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            if "secret" in volume:  # as kubelet does: wait for the Secret, then its files
                folder = await self._secret_files(meta["namespace"],
                                                  volume["secret"]["secretName"])
                env = {k: v.replace(mount["mountPath"], str(folder), 1)
                       if v.startswith(mount["mountPath"] + "/") else v
                       for k, v in env.items()}
            if mount["name"] not in self.volumes:
                continue  # emptyDir /tmp, secrets
            host = self.volumes[mount["name"]] / mount.get("subPath", "")
            mounts.append((mount["mountPath"], host))
        served = []
        for item in env["FILESERVER_MOUNTS"].split(","):
            name, path = item.split("=", 1)
            served.append(f"{name}={next(h for p, h in mounts if p == path)}")
        ip = f"127.0.0.{self.next_ip}"
        self.next_ip += 1
        env |= {"FILESERVER_MOUNTS": ",".join(served), "FILESERVER_HOST": ip,
                "PATH": os.environ["PATH"]}
        context = spec["securityContext"]
        if os.geteuid() == 0:
            env |= {"FILESERVER_UID": str(context["runAsUser"]),
                    "FILESERVER_GID": str(context["runAsGroup"]),
                    "FILESERVER_GROUPS": ",".join(map(str, context["supplementalGroups"]))}
        process = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "jupyterhub-sidecars"), "kubepie", "fileserver", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        self.processes[meta["name"]] = process
        await self.api.set_status(meta["namespace"], meta["name"], {
            "phase": "Pending", "podIP": ip, "conditions": [
                {"type": "Ready", "status": "False"}]})
        await self._until_ready(container, ip, process)
        await self.api.set_status(meta["namespace"], meta["name"], {
            "phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": "True"}]})

    async def _until_ready(self, container: dict[str, Any], ip: str,
                           process: asyncio.subprocess.Process) -> None:
        """The container's readiness probe (httpGet), as kubelet runs it: Ready only once it
        answers 2xx/3xx, however long the start takes on a busy machine."""
        probe = container.get("readinessProbe") or {}
        get = probe.get("httpGet")
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        if get is None:
            return
        port = get["port"]
        if isinstance(port, str):  # a named port
            port = next(p["containerPort"] for p in container.get("ports", [])
                        if p.get("name") == port)
        url = f"{get.get('scheme', 'HTTP').lower()}://{ip}:{port}{get.get('path', '/')}"
        period = min(float(probe.get("periodSeconds", 10)), 0.2)  # faster than kubelet
        async with httpx.AsyncClient(timeout=1) as client:
            for _ in range(int(60 / period)):
                if process.returncode is not None:
                    return  # crashed: never Ready (the test will see that)
                try:
                    if (await client.get(url)).status_code < 400:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(period)

    async def _secret_files(self, namespace: str, name: str) -> Path:
        """A Secret's keys as files (0444 as the pod asks, in a folder of the pod's own),
        once the Secret exists; kubelet retries the mount until then."""
        for _ in range(100):
            secret = self.api.secrets.get((namespace, name))
            if secret is not None:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"secret {name} never appeared")
        folder = Path(tempfile.mkdtemp(prefix="kubelet-secret-"))
        folder.chmod(0o755)
        self.secret_dirs.append(folder)
        for key, value in (secret.get("data") or {}).items():
            path = folder / key
            path.write_bytes(base64.b64decode(value))
            path.chmod(0o444)
        return folder

    async def stop_pod(self, pod: dict[str, Any]) -> None:
        """The pod was deleted: its container gets SIGTERM, then SIGKILL after the grace."""
        process = self.processes.pop(pod["metadata"]["name"], None)
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def crash(self, namespace: str, name: str) -> None:
        """The container dies: the process is killed and the pod reported Failed."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await self.api.set_status(namespace, name, {"phase": "Failed", "conditions": [
            {"type": "Ready", "status": "False"}]})

    async def stop_all(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            await process.wait()
        self.processes.clear()
        for folder in self.secret_dirs:
            shutil.rmtree(folder, ignore_errors=True)
