"""Several file server processes on one port (FILESERVER_PROCESSES): the kernel spreads the
connections over them, and a lock taken through one holds in every other — WebDAV clients open
new connections at will, so any other behaviour would lose writes."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.fileserver import Fileserver, open_folder
from harness.litmus import run_litmus
from harness.tools import require_tool

pytestmark = pytest.mark.slow

PROCESSES = 3
LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:">'
             b"<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>"
             b"<D:owner>test</D:owner></D:lockinfo>")


@pytest.fixture
def server() -> Iterator[Fileserver]:
    with open_folder() as folder:
        (folder / "home").mkdir()
        env = {"FILESERVER_PROCESSES": str(PROCESSES)}
        with Fileserver({"home": folder / "home"}, extra_env=env) as fileserver:
            yield fileserver


def fresh(server: Fileserver, method: str, target: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """One request on a connection of its own (it may land on any of the processes)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, target, body=body,
                           headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        connection.close()


def workers_of(server: Fileserver) -> set[int]:
    assert server.process is not None
    found = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True,
                           text=True, check=False).stdout.split()
    return {int(pid) for pid in found}


def serving_pids(port: int) -> set[int]:
    """Processes holding established connections on ``port`` (``ss -tnp``)."""
    ss = require_tool("ss")
    out = subprocess.run([ss, "-Htnp", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return {int(part.split("pid=")[1].split(",")[0]) for part in out.split()
            if "pid=" in part}


def test_connections_are_spread_over_the_processes(server: Fileserver) -> None:
    assert len(workers_of(server)) == PROCESSES - 1
    held = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for _ in range(24)]
    try:
        for connection in held:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
        assert len(serving_pids(server.port)) >= 2  # 24 connections, 3 sockets
    finally:
        for connection in held:
            connection.close()


def test_a_lock_taken_through_one_process_holds_in_all(server: Fileserver) -> None:
    status, headers = fresh(server, "LOCK", "/home/report.txt", LOCK_BODY,
                            {"Timeout": "Second-600"})
    assert status == 201
    token = headers["Lock-Token"]
    for _ in range(20):  # new connections: every process must know the lock
        assert fresh(server, "PUT", "/home/report.txt", b"someone else")[0] == 423
        assert fresh(server, "DELETE", "/home/report.txt")[0] == 423
    for _ in range(10):
        assert fresh(server, "PUT", "/home/report.txt", b"the holder",
                     {"If": f"({token})"})[0] in (200, 204)
    assert fresh(server, "UNLOCK", "/home/report.txt",
                 headers={"Lock-Token": token})[0] == 204
    for _ in range(10):  # gone everywhere
        assert fresh(server, "PUT", "/home/report.txt", b"anyone")[0] in (200, 204)


def test_of_concurrent_exclusive_locks_exactly_one_is_granted(server: Fileserver) -> None:
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: fresh(server, "LOCK", "/home/contended.txt",
                                                LOCK_BODY)[0], range(32)))
    assert sorted(answers).count(423) == 31 and answers.count(201) == 1, answers


def test_litmus_passes_with_several_processes(server: Fileserver, tmp_path: Path) -> None:
    run_litmus(f"{server.url}/home/", tmp_path).assert_all_passed()


def lock_folder(server: Fileserver) -> Path:
    """The shared lock table's folder, from the parent's open files."""
    assert server.process is not None
    fds = Path(f"/proc/{server.process.pid}/fd")
    [table] = {Path(os.readlink(fd)) for fd in fds.iterdir()
               if "kubepie-fileserver-" in os.readlink(fd) and
               os.readlink(fd).endswith("locks.sqlite")}
    return table.parent


def test_the_workers_stop_with_the_server(server: Fileserver) -> None:
    children = workers_of(server)
    folder = lock_folder(server)
    assert folder.parent == Path("/dev/shm") and (folder.stat().st_mode & 0o777) == 0o700
    assert server.stop() == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid
    assert not folder.exists(), server.log()[-2500:]


def test_workers_end_when_the_parent_is_killed(server: Fileserver) -> None:
    assert server.process is not None
    children = workers_of(server)
    folder = lock_folder(server)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in children):
        assert time.monotonic() < deadline, "workers outlived their parent"
        time.sleep(0.1)
    assert not folder.exists(), server.log()[-2500:]  # the workers removed it


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return False
