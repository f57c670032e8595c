"""The local backend's fork server: file servers forked from one process that imported the
file server once — each as its user, none holding a gateway secret, none left behind when
the gateway stops, dies, or the fork server itself is killed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.fileserver import running_as_root
from harness.gateway import Gateway, access_token, make_homes, running_gateway, temp_root
from harness.oidc import OidcProvider

pytestmark = pytest.mark.slow


@pytest.fixture
def setup() -> Iterator[tuple[Gateway, OidcProvider]]:
    with running_gateway(make_homes(temp_root())) as served:
        yield served


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def alive(pid: int) -> bool:
    try:
        return status_of(pid)["State"][0] != "Z"
    except FileNotFoundError:
        return False


def servers(gateway: Gateway) -> dict[str, int]:
    """user -> pid of their file server, from the gateway's log (the latest start)."""
    found = {}
    for line in gateway.log().splitlines():
        if '"file server started"' in line:
            record = json.loads(line)
            found[record["user"]] = int(record["server"].split()[-1])
    return found


def read_secret(gateway: Gateway, provider: OidcProvider, user: str) -> str:
    headers = {"Authorization": f"Bearer {access_token(provider, user)}"}
    return httpx.get(f"{gateway.url}/home/secret.txt", headers=headers, timeout=30).text


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_servers_are_forked_from_one_bare_process_as_their_users(
        setup: tuple[Gateway, OidcProvider]) -> None:
    gateway, provider = setup
    assert read_secret(gateway, provider, "alice") == "alice's secret\n"
    assert read_secret(gateway, provider, "bob") == "bob's secret\n"
    pids = servers(gateway)
    parents = {status_of(pid)["PPid"] for pid in pids.values()}
    assert len(parents) == 1, "one fork server for all"
    forkserver = int(parents.pop())
    assert b"backends.forkserver" in Path(f"/proc/{forkserver}/cmdline").read_bytes()
    assert gateway.process is not None
    assert status_of(forkserver)["PPid"] == str(gateway.process.pid)
    environ = Path(f"/proc/{forkserver}/environ").read_bytes().split(b"\0")
    assert {item.split(b"=")[0] for item in environ if item} <= {b"PATH", b"LANG"}
    if running_as_root():
        assert status_of(pids["alice"])["Uid"].split()[0] == "1001"
        assert status_of(pids["bob"])["Uid"].split()[0] == "1002"
        assert status_of(pids["alice"])["CapEff"] == "0000000000000000"
    # Each server is a session of its own (a signal to the gateway's group spares them).
    assert os.getsid(pids["alice"]) == pids["alice"]


def test_stopping_the_gateway_stops_the_fork_server_and_every_server(
        setup: tuple[Gateway, OidcProvider]) -> None:
    gateway, provider = setup
    read_secret(gateway, provider, "alice")
    read_secret(gateway, provider, "bob")
    pids = list(servers(gateway).values())
    forkserver = int(status_of(pids[0])["PPid"])
    assert gateway.stop() == 0
    assert wait_gone([*pids, forkserver], 15) == []


def test_a_killed_gateway_leaves_nothing_running(
        setup: tuple[Gateway, OidcProvider]) -> None:
    gateway, provider = setup
    read_secret(gateway, provider, "alice")
    pids = list(servers(gateway).values())
    forkserver = int(status_of(pids[0])["PPid"])
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait()
    # The fork server reads end of input and stops its children (SIGTERM, then SIGKILL).
    assert wait_gone([*pids, forkserver], 15) == []


def test_a_killed_fork_server_is_replaced_and_its_servers_do_not_linger(
        setup: tuple[Gateway, OidcProvider]) -> None:
    gateway, provider = setup
    read_secret(gateway, provider, "alice")
    first = servers(gateway)["alice"]
    forkserver = int(status_of(first)["PPid"])
    os.kill(forkserver, signal.SIGKILL)
    assert wait_gone([first], 10) == [], "the old server kept running untracked"
    assert read_secret(gateway, provider, "alice") == "alice's secret\n"
    second = servers(gateway)["alice"]
    assert second != first and int(status_of(second)["PPid"]) != forkserver
    assert "the file server fork server exited" in gateway.log()
