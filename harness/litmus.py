"""litmus, the WebDAV server test suite, run as a client against a URL and judged whole."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.tools import require_tool

# litmus 0.13's suites and how many tests each has (RFC 4918 classes 1 and 2).
SUITES = {"basic": 16, "copymove": 13, "props": 30, "locks": 41, "http": 4}
SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")


@dataclass
class LitmusRun:
    output: str
    summaries: dict[str, tuple[int, int, int]]  # suite: (run, passed, failed)

    @property
    def report(self) -> str:
        """The lines worth reading when something went wrong."""
        return "\n".join(line for line in self.output.splitlines()
                         if "FAIL" in line or "WARNING" in line or "SKIPPED" in line)

    def assert_all_passed(self, context: str = "") -> None:
        """Every suite ran every test and passed it, with no warning: "tests run" leaves
        skipped tests out, so the counts are compared with the suites' sizes."""
        assert set(self.summaries) == set(SUITES), \
            f"suites missing from litmus' output:\n{self.output[-3000:]}{context}"
        for suite, size in SUITES.items():
            assert self.summaries[suite] == (size, size, 0), \
                f"{suite}: {self.summaries[suite]}\n{self.report}{context}"
        assert "WARNING" not in self.output, self.report + context


def run_litmus(url: str, workdir: Path, user: str = "", password: str = "") -> LitmusRun:
    """All suites against ``url`` (a collection, ending in /), with Basic credentials if given.
    ``-k`` keeps going after a failure, so one run reports every suite (litmus then exits 0
    even when tests fail: judge the summaries)."""
    litmus = require_tool("litmus")
    args = [litmus, "-k", url, *([user, password] if user else [])]
    result = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300,
                            check=False, env={**os.environ, "HOME": str(workdir)})
    output = result.stdout.replace("\r", "\n")
    summaries = {m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4)))
                 for m in SUMMARY.finditer(output)}
    return LitmusRun(output, summaries)
