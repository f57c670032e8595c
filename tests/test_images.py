"""The images built from deploy/images/ and run the way Kubernetes runs them.

Every target of the Dockerfile is built offline (harness/podman.py: a debootstrapped Debian
base, stand-ins for the hub and notebook bases, a wheelhouse from the host), then run as its
non-root user with a read-only root filesystem and every capability dropped: the sidecars
image runs walltime and tokenhelper against a real JupyterHub, the file server image passes
litmus, the notebook image starts ``jupyterhub-singleuser`` with the status API and the
status bar's extension. Sizes and build times go to test-artifacts/images.json.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import httpx
import pytest

from harness.fileserver import open_folder
from harness.hub import Hub, free_port, process_env, sidecar_get
from harness.litmus import run_litmus
from harness.oidc import OidcProvider, log_in
from harness.podman import TARGETS, Images, build_all, image_config, podman, run_args, run_once
from harness.tools import REPO

pytestmark = pytest.mark.slow

NOBODY = "65534:65534"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    built = build_all(tmp_path_factory.mktemp("images"))
    built.record(REPO / "test-artifacts" / "images.json")
    return built


class Container:
    """One detached container; removed (and its log kept for the assertion) on exit."""

    def __init__(self, args: list[str], *command: str) -> None:
        self.name = args[args.index("--name") + 1]
        podman(*args, *command)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def running(self) -> bool:
        result = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return result.stdout.strip() == "true"

    def wait(self, url: str, path: str, timeout: float = 60) -> httpx.Response:
        """``path`` answering 200; the container's log in the failure if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = sidecar_get(url, path, timeout=2)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            if not self.running() or time.monotonic() > deadline:
                raise AssertionError(f"{url}{path} did not answer 200 "
                                     f"(running: {self.running()}):\n{self.logs()[-4000:]}")
            time.sleep(0.2)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *_: object) -> None:
        podman("rm", "--force", "--time", "10", self.name, check=False)


def sidecar_env(env: dict[str, str], prefix: str, port: int, secrets: Path,
                **changes: str) -> tuple[dict[str, str], dict[str, str]]:
    """What the spawner gave a local sidecar, as a pod's container gets it.

    The sidecar's own settings and the hub's variables move over; a UNIX socket becomes a
    loopback port (as in a pod); each ``*_FILE`` setting becomes a file in ``secrets`` as
    kubelet writes a Secret volume for a pod with ``fsGroup`` (root-owned, group nobody,
    0440), mounted read-only at the same path. Returns (environment, mounts).
    """
    moved = {k: v for k, v in env.items()
             if k.startswith((prefix, "JUPYTERHUB_")) and k != f"{prefix}SOCKET"}
    moved.update({f"{prefix}PORT": str(port), **changes})
    mounts = {}
    for key, path in moved.items():
        if key.endswith("_FILE"):
            copy = secrets / key.lower()
            copy.write_bytes(Path(path).read_bytes())
            os.chown(copy, 0, 65534)
            copy.chmod(0o440)
            mounts[str(copy)] = path
    return moved, mounts


def test_every_image_ends_non_root_with_its_entrypoint(images: Images) -> None:
    users = {target: image_config(images.tags[target]).get("User") for target in TARGETS}
    assert users == {"sidecars": NOBODY, "fileserver": NOBODY, "hub": "1000",
                     "notebook": "1000"}
    assert image_config(images.tags["fileserver"])["Entrypoint"] == [
        "jupyterhub-sidecars", "kubepie", "fileserver"]
    help_text = run_once(images.tags["sidecars"])
    for service in ("walltime", "tokenhelper", "kubepie", "metrics"):
        assert service in help_text
    version = run_once(images.tags["lxcfs"], "--version")
    assert re.search(r"5\.0\.\d", version), version


def test_hub_image_has_the_hooks_beside_the_versions_z2jh_ships(images: Images) -> None:
    script = ("import jupyterhub, kubespawner, oauthenticator, services.hub.hooks as hooks;"
              "print(jupyterhub.__version__, kubespawner.__version__, "
              "oauthenticator.__version__, callable(hooks.walltime_scopes))")
    output = run_once(images.tags["hub"], "python", "-c", script)
    assert output.split() == ["5.3.0", "7.0.0", "17.3.0", "True"], output


def test_sidecars_image_runs_walltime_against_the_real_hub(images: Images, oidc_hub: Hub,
                                                           tmp_path: Path) -> None:
    user = "img-walltime"
    log_in(oidc_hub.public_url, user).close()
    model = oidc_hub.start_server(user, profile="long")  # the local sidecar: 12 h
    local = process_env(oidc_hub.sidecar_pid(user))
    port = free_port()
    env, mounts = sidecar_env(local, "WALLTIME_", port, tmp_path, WALLTIME_LIMIT="15s",
                              WALLTIME_WARN="5s")
    args = run_args(images.tags["sidecars"], name=f"walltime-{port}", env=env, mounts=mounts,
                    user=NOBODY)
    with Container(args, "walltime") as container:
        status = container.wait(f"http://127.0.0.1:{port}", "/status").json()
        assert status["limit"] == 15 and status["user"] == user
        assert sidecar_get(f"http://127.0.0.1:{port}", "/healthz").status_code == 200
        stopping = oidc_hub.wait_stop_began(user, timeout=60)
        started = time.mktime(time.strptime(model["started"][:19], "%Y-%m-%dT%H:%M:%S")) \
            - time.timezone
        assert 15 <= stopping - started <= 30, (stopping - started, container.logs())
        assert "walltime reached" in container.logs()
    oidc_hub.wait_stopped(user, timeout=60)


def test_sidecars_image_runs_tokenhelper_against_the_real_hub_and_provider(
        images: Images, oidc_hub: Hub, module_provider: OidcProvider, tmp_path: Path) -> None:
    user = "img-token"
    log_in(oidc_hub.public_url, user).close()
    oidc_hub.start_server(user, profile="unlimited")
    model = oidc_hub.server_model(user)
    assert model is not None
    local = process_env(int(model["state"]["sidecar_pids"]["tokenhelper"]))
    port = free_port()
    with open_folder() as run_dir:
        os.chown(run_dir, 65534, 65534)
        env, mounts = sidecar_env(local, "TOKENHELPER_", port, tmp_path,
                                  TOKENHELPER_RUN_DIR="/run/sidecars")
        env.pop("TOKENHELPER_UID", None)  # the helper runs as the notebook's user here
        mounts[str(run_dir)] = "/run/sidecars:rw"
        args = run_args(images.tags["sidecars"], name=f"tokenhelper-{port}", env=env,
                        mounts=mounts, user=NOBODY)
        with Container(args, "tokenhelper") as container:
            base = f"http://127.0.0.1:{port}"
            token = container.wait(base, "/token").text.strip()
            assert module_provider.userinfo_status(token) == 200, container.logs()
            assert container.wait(base, "/healthz").json()["ok"] is True
            bearer = run_dir / "bt_u65534"
            assert bearer.read_text().strip() == token
            assert stat.S_IMODE(bearer.stat().st_mode) == 0o600
            assert "refresh_token" not in bearer.read_text()


def test_fileserver_image_passes_litmus(images: Images, tmp_path: Path) -> None:
    port = free_port()
    with open_folder() as folder:
        os.chown(folder, 65534, 65534)
        env = {"FILESERVER_MOUNTS": "home=/data/home", "FILESERVER_PORT": str(port)}
        args = run_args(images.tags["fileserver"], name=f"fileserver-{port}", env=env,
                        mounts={str(folder): "/data/home:rw"}, user=NOBODY)
        with Container(args) as container:
            container.wait(f"http://127.0.0.1:{port}", "/healthz")
            litmus = run_litmus(f"http://127.0.0.1:{port}/home/", tmp_path)
            litmus.assert_all_passed(context="\n" + container.logs()[-3000:])
            assert "Traceback" not in container.logs()


def test_notebook_image_starts_singleuser_with_status_api_and_extension(
        images: Images, oidc_hub: Hub) -> None:
    user = "img-notebook"
    log_in(oidc_hub.public_url, user).close()
    oidc_hub.start_server(user, profile="long")
    model = oidc_hub.server_model(user)
    assert model is not None
    local = process_env(int(model["state"]["pid"]))
    port = free_port()
    prefix = local["JUPYTERHUB_SERVICE_PREFIX"]
    env = {k: v for k, v in local.items()
           if k.startswith(("JUPYTERHUB_", "MEM_", "CPU_")) and not k.endswith("_FILE")}
    env.update({"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}",
                "HOME": "/home/jovyan"})
    with open_folder() as home:
        os.chown(home, 1000, 100)
        args = run_args(images.tags["notebook"], user="1000:100", name=f"notebook-{port}",
                        env=env, mounts={str(home): "/home/jovyan:rw"})
        with Container(args, "jupyterhub-singleuser") as container:
            headers = {"Authorization": f"token {local['JUPYTERHUB_API_TOKEN']}"}
            url = f"http://127.0.0.1:{port}{prefix}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    response = httpx.get(url + "api/sidecars/status", headers=headers,
                                         timeout=10)
                    if response.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert container.running(), container.logs()
                assert time.monotonic() < deadline, container.logs()[-4000:]
                time.sleep(0.5)
            body = response.json()
            assert body["memory"]["used_bytes"] > 20 * 10**6
            lab = httpx.get(url + "lab", headers=headers, timeout=30)
            assert lab.status_code == 200
            assert "jupyterhub-sidecars-status" in lab.text, "the status bar is not loaded"


def test_fileserver_image_refuses_to_serve_as_root(images: Images) -> None:
    """A pod spec that forgets runAsUser (or a webhook that did not run) serves nothing."""
    args = run_args(images.tags["fileserver"], user="0:0",
                    env={"FILESERVER_MOUNTS": "home=/tmp", "FILESERVER_PORT": str(free_port())})
    result = podman(*args, check=False, timeout=120)
    assert result.returncode != 0
    assert "refusing to serve files as root" in result.stdout + result.stderr
