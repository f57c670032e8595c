"""Finding the real tools the tests use: in CI a missing tool fails the run, never skips it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def manifests(paths: Iterable[Path]) -> list[Path]:
    """Kubernetes manifests among ``paths``: kustomization.yaml files are not objects."""
    return sorted(p for p in paths if p.name != "kustomization.yaml")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, *extra_dirs: Path) -> str:
    """Path of ``name``; skip locally when it is missing, fail in CI."""
    for directory in (VENV_BIN, *extra_dirs):
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    _missing(f"{name} is not installed (make setup installs it)")


def require_debian_module(module: str, package: str) -> str:
    """Debian's python3 when it can import ``module`` (a client that exists only as a
    Debian package with Python bindings, like gfal2); skip locally, fail in CI."""
    python = "/usr/bin/python3"
    if Path(python).exists() and subprocess.run([python, "-c", f"import {module}"],
                                                capture_output=True, check=False).returncode == 0:
        return python
    _missing(f"{python} cannot import {module}: {package} is not installed "
             "(make setup installs it)")


def _missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """SIGTERM (a service's graceful stop), SIGKILL after ``timeout``; its exit status."""
    if process is None or process.poll() is not None:
        return process.returncode if process else None
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def wait_http(url: str, *, status: int | None = None, timeout: float = 30) -> httpx.Response:
    """Poll ``url`` until something listens there (and answers ``status``, if given)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if status is None or response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer{f' {status}' if status else ''} "
                                 f"within {timeout} s")
        time.sleep(0.1)


def pip_wheel(wheelhouse: Path, *requirements: str, timeout: float = 900) -> float:
    """Every package ``requirements`` need, as wheels in ``wheelhouse``, from this venv's pip
    (its index and cache): what an offline install or image build then takes. Seconds taken."""
    started = time.monotonic()
    subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "wheel", "--quiet",
                    "--wheel-dir", str(wheelhouse), *requirements],
                   check=True, capture_output=True, timeout=timeout)
    return time.monotonic() - started
