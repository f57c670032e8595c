"""A real JupyterHub 6 on loopback, started and stopped by the tests."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.tools import REPO, VENV_BIN, require_tool
from services.runtime import sidecar_urls

CONFIG = Path(__file__).with_name("jupyterhub_test_config.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Hub:
    state_dir: Path
    backstop: bool = False
    oidc_issuer: str | None = None
    oidc_kind: str = "oidc-provider-mock"
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    backstop_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)  # TEST_* settings of the config
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/hub/api"

    @property
    def public_url(self) -> str:
        """The proxy: where browsers reach the hub and the users' servers."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "hub.log"

    def start(self, timeout: float = 60) -> None:
        require_tool("configurable-http-proxy", REPO / "node_modules" / ".bin")
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{REPO / 'node_modules' / '.bin'}:{os.environ.get('PATH', '')}",
            "TEST_HUB_STATE": str(self.state_dir),
            "TEST_HUB_PORT": str(self.port),
            "TEST_HUB_API_PORT": str(self.api_port),
            "TEST_PROXY_API_PORT": str(self.proxy_api_port),
            "TEST_ADMIN_TOKEN": self.token,
            "PYTHONPATH": str(REPO),
        }
        if self.backstop:
            env["TEST_BACKSTOP_PORT"] = str(self.backstop_port)
        env.update(self.extra_env)
        if self.oidc_issuer:
            env["TEST_OIDC_ISSUER"] = self.oidc_issuer
            env["TEST_OIDC_KIND"] = self.oidc_kind
            env["JUPYTERHUB_CRYPT_KEY"] = secrets.token_hex(32)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(CONFIG)],
            cwd=self.state_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.api_url + "/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"jupyterhub did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the hub only: with cleanup_servers off, servers and sidecars keep running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any
            ) -> httpx.Response:
        headers = {"Authorization": f"token {token or self.token}"}
        return httpx.request(method, self.api_url + path, headers=headers, timeout=30, **kwargs)

    def server_path(self, user: str, name: str = "") -> str:
        return f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"

    def start_server(self, user: str, name: str = "", profile: str = "long") -> dict[str, Any]:
        """Create the user, start the server, wait until it is ready; return its model."""
        self.api("POST", f"/users/{user}")
        response = self.api("POST", self.server_path(user, name), json={"profile": profile})
        assert response.status_code in (201, 202), response.text
        return self.wait_ready(user, name)

    def wait_ready(self, user: str, name: str = "", timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, name)
            if model and model.get("ready"):
                return model
            time.sleep(0.1)
        raise AssertionError(f"server {user}/{name} did not become ready")

    def server_model(self, user: str, name: str = "") -> dict[str, Any] | None:
        response = self.api("GET", f"/users/{user}", params={"include_stopped_servers": "1"})
        response.raise_for_status()
        server = response.json().get("servers", {}).get(name)
        if server is None or server.get("stopped"):
            return None
        return dict(server)

    def wait_stopped(self, user: str, name: str = "", timeout: float = 60) -> float:
        """Poll until the server is gone; return the time.time() it was first seen gone."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_model(user, name) is None:
                return time.time()
            time.sleep(0.1)
        raise AssertionError(f"server {user}/{name} still running after {timeout}s")

    def wait_stop_began(self, user: str, name: str = "", timeout: float = 60) -> float:
        """Poll until the hub is stopping the server (or has stopped it); return that time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, name)
            if model is None or model.get("pending") == "stop":
                return time.time()
            time.sleep(0.05)
        raise AssertionError(f"server {user}/{name} not stopping after {timeout}s")

    def sidecar_pid(self, user: str, name: str = "") -> int:
        model = self.server_model(user, name)
        assert model is not None
        return int(model["state"]["sidecar_pids"]["walltime"])

    def log_records(self, **match: Any) -> Iterator[dict[str, Any]]:
        """The JSON log lines (the sidecars') that contain every key/value in ``match``."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if all(record.get(k) == v for k, v in match.items()):
                yield record


def sidecar_url(env: dict[str, str], prefix: str) -> str:
    """A sidecar's URL from its own environment: its UNIX socket (the local spawner), else
    its loopback port."""
    socket = env.get(f"{prefix}SOCKET")
    return sidecar_urls.unix_url(socket) if socket else \
        f"http://127.0.0.1:{env[f'{prefix}PORT']}"


def sidecar_get(url: str, path: str, timeout: float = 10) -> httpx.Response:
    """GET ``path`` of a sidecar, over its socket or loopback."""
    with sidecar_urls.client(url, timeout=timeout) as client:
        return client.get(sidecar_urls.http_url(url, path))


def wait_sidecar(url: str, path: str, *, status: int = 200, timeout: float = 30
                 ) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = sidecar_get(url, path, timeout=2)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}{path} did not answer {status} within {timeout} s")
        time.sleep(0.1)


def secret_file(env: dict[str, str], setting: str) -> str:
    """A credential a sidecar reads from a file (its path is in the sidecar's environment)."""
    return Path(env[setting]).read_text().strip()


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def python() -> str:
    return sys.executable


def stop_all_servers(hub: Hub) -> None:
    response = hub.api("GET", "/users", params={"state": "active"})
    if response.status_code != 200:
        return
    for user in response.json():
        for name in user.get("servers", {}):
            hub.api("DELETE", hub.server_path(user["name"], name))


@contextlib.contextmanager
def running_hub(state_dir: Path, **options: Any) -> Iterator[Hub]:
    """A started hub; its servers and itself stopped afterwards."""
    instance = Hub(state_dir, **options)
    instance.start()
    try:
        yield instance
    finally:
        stop_all_servers(instance)
        instance.stop()


def server_pid(hub: Hub, user: str) -> int:
    model = hub.server_model(user)
    assert model is not None
    return int(model["state"]["pid"])


def user_token(hub: Hub, user: str) -> str:
    response = hub.api("POST", f"/users/{user}/tokens", json={"note": "metrics test"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def status_url(hub: Hub, user: str) -> str:
    return f"{hub.public_url}/user/{user}/api/sidecars/status"


OFFSETS = (0, 1, 81, 766, 768, 780, 1400)  # hub, proxy API, hub API, backstop, metrics,
#                                           kubepie gateway, OIDC provider


def free_demo_port() -> int:
    """A base port for `jupyterhub-sidecars demo --port`: the demo listens at fixed offsets
    from it, all of which must be free."""
    for base in range(21000, 40000, 1500):
        ports_free = True
        for offset in OFFSETS:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", base + offset))
                except OSError:
                    ports_free = False
                    break
        if ports_free:
            return base
    raise RuntimeError("no free ports for the demo")
