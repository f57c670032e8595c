"""Every litmus suite against the file server: any failed, skipped or warned test fails this."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fileserver import Fileserver, open_folder
from tests.tools import require_tool

# litmus 0.13's suites and how many tests each has (RFC 4918 classes 1 and 2).
SUITES = {"basic": 16, "copymove": 13, "props": 30, "locks": 41, "http": 4}
SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[Fileserver]:
    with open_folder() as folder:
        (folder / "home").mkdir()
        with Fileserver({"home": folder / "home"}) as fileserver:
            yield fileserver


def test_every_litmus_suite_passes(server: Fileserver, tmp_path: Path) -> None:
    litmus = require_tool("litmus")
    workdir = tmp_path / "litmus"
    workdir.mkdir()
    # -k: keep going after a failure, so one run reports every suite. litmus exits 0 under -k
    # even when tests fail, and "tests run" leaves skipped tests out: compare the counts.
    result = subprocess.run([litmus, "-k", f"{server.url}/home/"], cwd=workdir,
                            capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout.replace("\r", "\n")
    summaries = {m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4)))
                 for m in SUMMARY.finditer(output)}
    report = "\n".join(line for line in output.splitlines()
                       if "FAIL" in line or "WARNING" in line or "SKIPPED" in line)
    assert set(summaries) == set(SUITES), f"suites missing from litmus' output:\n{output[-3000:]}"
    for suite, size in SUITES.items():
        run, passed, failed = summaries[suite]
        assert (run, passed, failed) == (size, size, 0), f"{suite}: {summaries[suite]}\n{report}"
    assert "WARNING" not in output, report
    assert "Traceback" not in server.log()
