"""The session-level leak check itself: a run whose test leaves a process behind fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.tools import REPO

LEAKING_TEST = '''
import subprocess

def test_starts_a_process_and_forgets_it():
    subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 &"], check=True)
'''
CONFTEST = "from tests.conftest import pytest_configure, pytest_runtest_setup, " \
           "pytest_sessionfinish  # noqa: F401\n"


def test_a_process_that_outlives_its_test_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_leaky.py").write_text(LEAKING_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1, result.stdout  # the test passed; the run did not
    assert "1 passed" in result.stdout
    assert "processes outlived the tests" in result.stdout
    assert "test_leaky.py::test_starts_a_process_and_forgets_it: sleep 600" in result.stdout
    leftover = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True)
    assert leftover.stdout == ""  # and it was killed
