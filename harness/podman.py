"""The images, built and run with podman the way Kubernetes runs them, offline.

No container registry is reachable from the tests: the Python base is Debian bookworm made
with debootstrap (Debian's mirror is reachable), the hub and notebook bases are stand-ins
built on it (harness/image_bases/), and pip takes every package from a wheelhouse built on the
host (``pip wheel``) and mounted into the build. The Dockerfile gets all of it through its
build arguments, whose defaults stay production's. Containers run with runc and cgroupfs
(crun refuses the hybrid cgroups here) and ulimits at or below the host's.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.tools import REPO, pip_wheel, require_tool

PREFIX = "localhost/jhs-test"
PYTHON_BASE = f"{PREFIX}/python:3.11-bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
# What the stand-in bases and the offline wheel build need besides the package itself.
EXTRA_WHEELS = ("hatchling>=1.21", "jupyterlab>=4.2,<5", "jupyterhub==5.3.0",
                "jupyterhub-kubespawner==7.0.0", "oauthenticator==17.3.0")
TARGETS = ("sidecars", "fileserver", "hub", "notebook")


def podman(*args: str, timeout: float = 600, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    runc = require_tool("runc", Path("/usr/sbin"))
    command = [require_tool("podman"), "--runtime", runc, "--cgroup-manager", "cgroupfs",
               *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command[:8])} … exited {result.returncode}:\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def image_size(tag: str) -> int:
    return int(json.loads(podman("image", "inspect", tag).stdout)[0]["Size"])


def image_config(tag: str) -> dict[str, object]:
    return dict(json.loads(podman("image", "inspect", tag).stdout)[0]["Config"])


def make_python_base(workdir: Path) -> float:
    """Debian bookworm with its Python 3.11 and pip, as ``python:3.11-slim-bookworm`` offers.

    Reused while it exists (it depends on nothing in the repository). Debian marks its
    Python as externally managed (PEP 668); the official image does not, so neither does
    this stand-in. Returns the seconds it took (0 when reused).
    """
    if image_exists(PYTHON_BASE):
        return 0.0
    debootstrap = require_tool("debootstrap", Path("/usr/sbin"))
    started = time.monotonic()
    rootfs = workdir / "rootfs"
    subprocess.run([debootstrap, "--variant=minbase",
                    "--include=python3,python3-pip,ca-certificates", "bookworm", str(rootfs),
                    DEBIAN_MIRROR], check=True, capture_output=True, timeout=900)
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    (rootfs / "usr/bin/python").symlink_to("python3")
    subprocess.run(["chroot", str(rootfs), "apt-get", "clean"], check=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [require_tool("podman"), "import", "--change", 'CMD ["python3"]', "-", PYTHON_BASE],
        stdin=tar.stdout, capture_output=True, text=True, timeout=300, check=False)
    tar.wait()
    assert imported.returncode == 0, imported.stderr
    subprocess.run(["rm", "-rf", "--one-file-system", str(rootfs)], check=True)
    return time.monotonic() - started


def make_wheelhouse(wheelhouse: Path) -> float:
    """Every package the builds install, as wheels, from the host's pip (and its cache)."""
    return pip_wheel(wheelhouse, str(REPO), *EXTRA_WHEELS)


@dataclass
class Images:
    """Tags of the built images, with what building them took."""

    wheelhouse: Path
    tags: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def build(self, name: str, dockerfile: Path, *, target: str | None = None,
              args: dict[str, str] | None = None) -> str:
        tag = f"{PREFIX}/{name}:test"
        command = ["build", "--file", str(dockerfile), "--tag", tag, "--network", "host",
                   "--volume", f"{self.wheelhouse}:/wheelhouse:ro", *ULIMITS]
        if target:
            command += ["--target", target]
        for key, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheelhouse",
                           **(args or {})}.items():
            command += ["--build-arg", f"{key}={value}"]
        started = time.monotonic()
        podman(*command, str(REPO), timeout=900)
        self.seconds[name] = time.monotonic() - started
        self.tags[name] = tag
        return tag

    def record(self, path: Path) -> None:
        """Sizes and build times, for the docs (test-artifacts/images.json)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        images = {name: {"tag": tag, "size_mb": round(image_size(tag) / 1e6, 1),
                         "build_s": round(self.seconds.get(name, 0.0), 1)}
                  for name, tag in self.tags.items()}
        steps = {name: round(seconds, 1) for name, seconds in self.seconds.items()
                 if name not in self.tags}  # the base (0: reused) and the wheelhouse
        path.write_text(json.dumps({"images": images, "steps_s": steps}, indent=2) + "\n")


def build_all(workdir: Path) -> Images:
    """The Python base, the stand-in bases, then every target of deploy/images/Dockerfile."""
    base_seconds = make_python_base(workdir)
    wheelhouse = workdir / "wheelhouse"
    wheel_seconds = make_wheelhouse(wheelhouse)
    images = Images(wheelhouse)
    images.seconds["python-base"] = base_seconds
    images.seconds["wheelhouse"] = wheel_seconds
    bases = Path(__file__).with_name("image_bases")
    stand_in = {"PYTHON_IMAGE": PYTHON_BASE}
    hub_base = images.build("hub-base", bases / "hub.Dockerfile", args=stand_in)
    notebook_base = images.build("notebook-base", bases / "notebook.Dockerfile", args=stand_in)
    build_args = {"PYTHON_IMAGE": PYTHON_BASE, "HUB_IMAGE": hub_base,
                  "NOTEBOOK_IMAGE": notebook_base}
    dockerfile = REPO / "deploy" / "images" / "Dockerfile"
    for target in TARGETS:
        images.build(target, dockerfile, target=target, args=build_args)
    images.build("lxcfs", REPO / "deploy" / "images" / "lxcfs.Dockerfile",
                 args={"DEBIAN_IMAGE": PYTHON_BASE})
    return images


def run_args(image: str, *, user: str | None = None, name: str | None = None,
             env: dict[str, str] | None = None, mounts: dict[str, str] | None = None,
             ) -> list[str]:
    """``podman run`` as Kubernetes runs the pod: non-root, read-only root, no capabilities.

    ``--read-only-tmpfs=false``: Kubernetes gives no writable /tmp either; what a container
    writes goes to the volumes its pod spec mounts (``mounts``: host path -> container path,
    read-only unless the container path ends in ``:rw``).
    """
    command = ["run", "--network", "host", "--read-only", "--read-only-tmpfs=false",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *ULIMITS]
    # A service runs detached and is removed by name, after its log has been read.
    command += ["--detach", "--name", name] if name else ["--rm"]
    if user:
        command += ["--user", user]
    for key, value in (env or {}).items():
        command += ["--env", f"{key}={value}"]
    for host, inside in (mounts or {}).items():
        mode = "rw" if inside.endswith(":rw") else "ro"
        command += ["--volume", f"{host}:{inside.removesuffix(':rw')}:{mode}"]
    return [*command, image]


def run_once(image: str, *command: str, user: str | None = None) -> str:
    """Run ``command`` in ``image`` as Kubernetes would (its own user by default); its output
    (stdout, then stderr)."""
    result = podman(*run_args(image, user=user), *command, timeout=120)
    return result.stdout + result.stderr
