"""A real kubepie file server process for the tests, running as an unprivileged user.

CI runs as root, and the server refuses to serve as root: there it drops to ``nobody``
(65534) and the test folders are handed to that user, so every write goes through the kernel's
permission checks exactly as in a user's pod.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.hub import free_port
from harness.tools import VENV_BIN, stop_process, wait_http

NOBODY = 65534


def running_as_root() -> bool:
    return os.geteuid() == 0


def serving_uid() -> int:
    return NOBODY if running_as_root() else os.getuid()


@contextlib.contextmanager
def open_folder() -> Iterator[Path]:
    """A temporary folder the server's user can reach (pytest's tmp_path is 0700 root's)."""
    folder = Path(tempfile.mkdtemp(prefix="kubepie-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def hand_over(*paths: Path) -> None:
    """Give folders (and what is in them) to the user the server runs as."""
    if not running_as_root():
        return
    for path in paths:
        for root, dirs, files in os.walk(path):
            os.chown(root, NOBODY, NOBODY)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), NOBODY, NOBODY)


@dataclass
class Fileserver:
    mounts: dict[str, Path]
    read_only: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    give_folders: bool = True  # hand the writable mounts to the server's user first
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    bin_dir: Path = VENV_BIN  # where jupyterhub-sidecars is installed

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
        env.update({
            "FILESERVER_MOUNTS": ",".join(f"{n}={p}" for n, p in self.mounts.items()),
            "FILESERVER_READ_ONLY": ",".join(self.read_only),
            "FILESERVER_PORT": str(self.port),
        })
        if running_as_root():
            env.update({"FILESERVER_UID": str(NOBODY), "FILESERVER_GID": str(NOBODY)})
        env.update(self.extra_env)
        return env

    def start(self) -> Fileserver:
        for name, path in self.mounts.items():
            if self.give_folders and name not in self.read_only:
                hand_over(path)
        log_path = self.log_path or Path(next(iter(self.mounts.values()))).parent / \
            f"fileserver-{self.port}.log"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "jupyterhub-sidecars"), "kubepie", "fileserver"],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/healthz", status=200, timeout=20)
        return self

    def stop(self) -> int | None:
        return stop_process(self.process, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> Fileserver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# Request targets that try to leave a mount: dot segments, encoded, overlong UTF-8, NUL.
TRAVERSALS = [
    "/home/../secret.txt", "/home/../../etc/passwd", "/home/%2e%2e/secret.txt",
    "/home/%2E%2E/%2e%2e/etc/passwd", "/home/..%2fsecret.txt", "/home/sub%2f..%2f..%2fsecret.txt",
    "/home/%2e%2e%2fsecret.txt", "/home/a%00b", "/home/%00", "/home/%c0%ae%c0%ae/secret.txt",
    "/home/%c0%af..%c0%afsecret.txt", "/home/%e0%80%ae%e0%80%ae/secret.txt", "/home/%ff",
    "/home/./../secret.txt", "/home/sub/#/../../secret.txt",
]
