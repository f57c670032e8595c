"""Finding the real tools the tests use: in CI a missing tool fails the run, never skips it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


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
    message = f"{name} is not installed (make setup installs it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
