"""Large downloads through the gateway's own proxy, moved socket to socket with splice(2):
exact bytes (whole, ranged, many at once, to a slow client), and nothing left behind when
either side goes away mid-body."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.fileserver import running_as_root
from harness.gateway import Gateway, access_token, make_homes, running_gateway, temp_root

pytestmark = pytest.mark.slow

MIB = 1 << 20


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Gateway, dict[str, str], dict[str, bytes]]]:
    root = make_homes(temp_root())
    home = root / "home" / "alice"
    files = {"big.bin": os.urandom(48 * MIB), "odd.bin": os.urandom(3 * MIB + 12345),
             "edge.bin": os.urandom(MIB)}  # exactly where splicing starts
    for name, content in files.items():
        (home / name).write_bytes(content)
        if running_as_root():
            os.chown(home / name, 1001, 1001)
    with running_gateway(root) as (gateway, provider):
        headers = {"Authorization": f"Bearer {access_token(provider, 'alice')}"}
        yield gateway, headers, files


def spliced_bytes(gateway: Gateway) -> float:
    text = httpx.get(f"{gateway.url}/metrics").text
    return next(s.value for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "jupyterhub_sidecars_kubepie_gateway_spliced_bytes_total")


def open_fds(gateway: Gateway) -> int:
    assert gateway.process is not None
    return len(os.listdir(f"/proc/{gateway.process.pid}/fd"))


def test_large_bodies_arrive_exactly_and_go_through_the_kernel(
        served: tuple[Gateway, dict[str, str], dict[str, bytes]]) -> None:
    gateway, headers, files = served
    before = spliced_bytes(gateway)
    for name, content in files.items():
        response = httpx.get(f"{gateway.url}/home/{name}", headers=headers, timeout=60)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(content)
        assert hashlib.sha256(response.content).digest() == hashlib.sha256(content).digest()
    ranged = httpx.get(f"{gateway.url}/home/big.bin", timeout=60,
                       headers={**headers, "Range": f"bytes={5 * MIB}-{25 * MIB - 1}"})
    assert ranged.status_code == 206 and ranged.content == files["big.bin"][5 * MIB:25 * MIB]
    head = httpx.head(f"{gateway.url}/home/big.bin", headers=headers)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(48 * MIB)
    # What aiohttp read with the headers went through Python; the rest through the kernel.
    moved = spliced_bytes(gateway) - before
    total = sum(len(c) for c in files.values()) + 20 * MIB
    assert total - 4 * 256 * 1024 <= moved <= total, (moved, total)


def test_many_downloads_at_once_each_get_their_own_bytes(
        served: tuple[Gateway, dict[str, str], dict[str, bytes]]) -> None:
    gateway, headers, files = served
    results: dict[int, bytes] = {}

    def fetch(index: int) -> None:
        name = ("big.bin", "odd.bin")[index % 2]
        with httpx.Client(timeout=60) as client:  # a connection each, kept for two GETs
            for _ in range(2):
                body = client.get(f"{gateway.url}/home/{name}", headers=headers).content
                results[index] = body if body != files[name] else b"ok"
                if results[index] != b"ok":
                    return

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == dict.fromkeys(range(6), b"ok")


def test_a_slow_client_gets_every_byte(
        served: tuple[Gateway, dict[str, str], dict[str, bytes]], tmp_path: Path) -> None:
    gateway, headers, files = served
    out = tmp_path / "slow.bin"
    # 3 MiB at 2 MB/s: the client's socket fills and the gateway waits for it many times.
    subprocess.run(["curl", "-sS", "--fail", "--limit-rate", "2M", "-o", str(out), "-H",
                    f"Authorization: {headers['Authorization']}",
                    f"{gateway.url}/home/odd.bin"], check=True, timeout=60)
    assert out.read_bytes() == files["odd.bin"]


def test_a_client_gone_mid_body_leaves_nothing_behind(
        served: tuple[Gateway, dict[str, str], dict[str, bytes]]) -> None:
    gateway, headers, files = served
    httpx.get(f"{gateway.url}/home/edge.bin", headers=headers)  # the server is running
    fds = open_fds(gateway)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(f"GET /home/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Authorization: {headers['Authorization']}\r\n\r\n".encode())
            received = 0
            while received < 2 * MIB:
                received += len(sock.recv(1 << 16))
        # closed with ~46 MiB still to come
    time.sleep(1)
    assert open_fds(gateway) <= fds + 2, "pipes or sockets left open"
    response = httpx.get(f"{gateway.url}/home/odd.bin", headers=headers, timeout=60)
    assert response.content == files["odd.bin"]
    # aiohttp logs a handler's ConnectionResetError (as on the copy path); nothing else.
    errors = [json.loads(line) for line in gateway.log().splitlines()
              if line.startswith("{") and "exc_info" in line]
    assert all(e["exc_info"].rstrip().endswith("ConnectionResetError: the client went away")
               for e in errors), errors[-1]["exc_info"][-800:]
    gone = [r for r in gateway.access_log()
            if r.get("path") == "/home/big.bin" and r.get("status") == 499]
    assert len(gone) >= 5


def test_a_file_server_gone_mid_body_cuts_the_download_short_at_once(
        served: tuple[Gateway, dict[str, str], dict[str, bytes]]) -> None:
    gateway, headers, files = served
    httpx.get(f"{gateway.url}/home/edge.bin", headers=headers)
    started = [int(json.loads(line)["server"].split()[-1])
               for line in gateway.log().splitlines() if '"file server started"' in line]
    received = 0
    with pytest.raises(httpx.RemoteProtocolError), \
            httpx.stream("GET", f"{gateway.url}/home/big.bin", headers=headers,
                         timeout=10) as response:
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received >= 2 * MIB and started:
                os.kill(started.pop(), signal.SIGKILL)
    assert 2 * MIB <= received < len(files["big.bin"])
    # The next request starts a new file server and is whole again.
    response = httpx.get(f"{gateway.url}/home/odd.bin", headers=headers, timeout=60)
    assert response.content == files["odd.bin"]
