"""Every litmus suite against the file server: any failed, skipped or warned test fails this."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fileserver import Fileserver, open_folder
from harness.litmus import run_litmus

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[Fileserver]:
    with open_folder() as folder:
        (folder / "home").mkdir()
        with Fileserver({"home": folder / "home"}) as fileserver:
            yield fileserver


def test_every_litmus_suite_passes(server: Fileserver, tmp_path: Path) -> None:
    run_litmus(f"{server.url}/home/", tmp_path).assert_all_passed()
    assert "Traceback" not in server.log()
