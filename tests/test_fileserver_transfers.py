"""Big and broken transfers: atomic PUTs, upload limits, validators, ranges, streamed listings."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.fileserver import Fileserver, hand_over, open_folder

pytestmark = pytest.mark.slow

MiB = 1 << 20


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Fileserver, Path]]:
    with open_folder() as folder:
        (folder / "home").mkdir()
        with Fileserver({"home": folder / "home"},
                        extra_env={"FILESERVER_MAX_UPLOAD_SIZE": "64Mi"}) as server:
            yield server, folder / "home"


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".kubepie-upload-")]


def wait_until(check: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_interrupted_put_keeps_the_old_file_and_leaves_nothing(
        served: tuple[Fileserver, Path]) -> None:
    server, home = served
    (home / "keep.bin").write_bytes(b"old content")
    hand_over(home)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"PUT /home/keep.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 20971520\r\n\r\n")
        sock.sendall(os.urandom(3 * MiB))
        wait_until(lambda: leftovers(home))  # the upload is under way, in a temporary file
    wait_until(lambda: not leftovers(home))
    assert (home / "keep.bin").read_bytes() == b"old content"
    # The same for a chunked upload that never sends its last chunk.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"PUT /home/keep.bin HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"100000\r\n" + os.urandom(MiB) + b"\r\n")
        wait_until(lambda: leftovers(home))
    wait_until(lambda: not leftovers(home))
    assert (home / "keep.bin").read_bytes() == b"old content"


def test_upload_limit_is_enforced_cleanly(served: tuple[Fileserver, Path]) -> None:
    server, home = served
    (home / "limit.bin").write_bytes(b"before")
    hand_over(home)
    # A declared length over the limit is refused before a byte of the body is sent.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"PUT /home/limit.bin HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {65 * MiB}\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")

    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b"\0" * MiB

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("PUT", "/home/limit.bin", body=chunks(), encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before the client has sent everything: also clean
    finally:
        connection.close()
    wait_until(lambda: not leftovers(home))
    assert (home / "limit.bin").read_bytes() == b"before"
    ok = httpx.put(f"{server.url}/home/limit.bin", content=iter([b"a" * MiB] * 3))
    assert ok.status_code == 204  # chunked and under the limit
    assert (home / "limit.bin").stat().st_size == 3 * MiB


def server_peak_rss(server: Fileserver) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_files_stream_both_ways(served: tuple[Fileserver, Path], tmp_path: Path) -> None:
    server, home = served
    size = 60 * MiB
    source = tmp_path / "large.bin"
    with source.open("wb") as out:
        for _ in range(size // MiB):
            out.write(os.urandom(MiB))
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    with source.open("rb") as body:
        put = httpx.put(f"{server.url}/home/large.bin", content=body,
                        headers={"Content-Length": str(size)}, timeout=60)
    assert put.status_code == 201
    assert hashlib.sha256((home / "large.bin").read_bytes()).hexdigest() == expected
    digest = hashlib.sha256()
    with httpx.stream("GET", f"{server.url}/home/large.bin", timeout=60) as response:
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == expected
    # Neither direction held the file in memory: the server's peak RSS stays far below it.
    assert server_peak_rss(server) < 150 * MiB


def test_validators_and_ranges(served: tuple[Fileserver, Path]) -> None:
    server, _ = served
    url = f"{server.url}/home/v.txt"
    created = httpx.put(url, content=b"0123456789")
    assert created.status_code == 201
    tag = created.headers["etag"]
    got = httpx.get(url)
    assert got.headers["etag"] == tag and got.headers["accept-ranges"] == "bytes"
    assert httpx.get(url, headers={"If-None-Match": tag}).status_code == 304
    assert httpx.get(url, headers={"If-Match": '"nope"'}).status_code == 412
    part = httpx.get(url, headers={"Range": "bytes=3-5"})
    assert (part.status_code, part.content) == (206, b"345")
    assert part.headers["content-range"] == "bytes 3-5/10"
    assert httpx.get(url, headers={"Range": "bytes=-2"}).content == b"89"
    assert httpx.get(url, headers={"Range": "bytes=20-"}).status_code == 416
    assert httpx.get(url, headers={"Range": "bytes=2-3", "If-Range": '"old"'}).status_code == 200
    head = httpx.head(url)
    assert head.headers["content-length"] == "10" and head.content == b""
    assert httpx.put(url, content=b"x", headers={"If-Match": '"stale"'}).status_code == 412
    assert httpx.put(url, content=b"x", headers={"If-None-Match": "*"}).status_code == 412
    assert httpx.put(url, content=b"new", headers={"If-Match": tag}).status_code == 204
    assert httpx.get(url).content == b"new"


def test_propfind_of_10000_files_streams_without_blocking(
        served: tuple[Fileserver, Path]) -> None:
    server, home = served
    many = home / "many"
    many.mkdir()
    for index in range(10_000):
        (many / f"file-{index:05d}.dat").write_bytes(b"x" * (index % 97))
    hand_over(many)
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get(f"{server.url}/healthz").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with httpx.stream("PROPFIND", f"{server.url}/home/many/", headers={"Depth": "1"},
                          timeout=60) as response:
            assert response.status_code == 207
            assert response.headers.get("transfer-encoding") == "chunked"
            pieces = list(response.iter_raw())
    finally:
        stop.set()
        prober.join()
    body = b"".join(pieces)
    assert body.count(b"<D:response>") == 10_001
    assert b"<D:href>/home/many/file-09999.dat</D:href>" in body
    assert body.endswith(b"</D:multistatus>\n")
    assert len(pieces) > 10  # many pieces: written while the folder was still being read
    assert latencies and max(latencies) < 0.5, max(latencies)
