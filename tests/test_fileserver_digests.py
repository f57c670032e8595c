"""Checksums on request (services/kubepie/fileserver/digests.py): RFC 3230 ``Want-Digest``
and RFC 9530 ``Want-Repr-Digest``, checked against zlib and hashlib, in process. gfal2 asking
for them as grid transfers do is in tests/test_webdav_clients.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
import time
import zlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient

from services.kubepie.fileserver import digests
from services.kubepie.fileserver.app import build_app
from services.kubepie.fileserver.digests import Digests, wanted_current, wanted_legacy
from services.kubepie.fileserver.settings import FileserverSettings

BIG = 3 * 1024 * 1024 + 17  # above what is read whole: the open-file path
SMALL = 1000


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(("header", "chosen"), [
    ("adler32", "adler32"), ("ADLER32", "adler32"), ("MD5", "md5"), ("SHA", "sha"),
    ("md5;q=0.3, SHA-256;q=0.9, adler32;q=0.5", "sha-256"),
    ("md5, sha-512", "md5"),                   # equal weights: the first
    ("md5;q=0, adler32;q=0.1", "adler32"),     # q=0: not acceptable
    ("md5;q=0", None), ("crc32c, UNIXcksum", None), ("", None), (",,;q=1", None),
    ("md5;q=lots, sha-256;q=0.2", "sha-256"),  # an unreadable weight is no weight
    ("md5;q=2", None),                         # out of range
    ("Md5 ; Q=0.5", "md5"),
])
def test_want_digest_picks_the_supported_algorithm_the_client_prefers(
        header: str, chosen: str | None) -> None:
    assert wanted_legacy(header) == chosen


@pytest.mark.parametrize(("header", "chosen"), [
    ("sha-256=1", "sha-256"), ("sha-512=3, sha-256=10", "sha-256"),
    ("sha-256=0, sha-512=1", "sha-512"), ("sha-256=0", None),
    ("md5=10, adler=10", None),               # deprecated in RFC 9530's registry
    ("sha-256", None), ("sha-256=x", None), ("sha-256=11", None), ("", None),
])
def test_want_repr_digest_takes_preferences_and_only_active_algorithms(
        header: str, chosen: str | None) -> None:
    assert wanted_current(header) == chosen


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, bytes]:
    (tmp_path / "home").mkdir()
    contents = {"big.bin": os.urandom(BIG), "small.txt": os.urandom(SMALL), "empty": b""}
    for name, data in contents.items():
        (tmp_path / "home" / name).write_bytes(data)
    return contents


async def test_get_and_head_answer_with_the_whole_files_digest(
        aiohttp_client: AiohttpClient, tmp_path: Path, files: dict[str, bytes]) -> None:
    settings = FileserverSettings(mounts=f"home={tmp_path / 'home'}")
    client = await aiohttp_client(build_app(settings, CollectorRegistry()))
    for name, data in files.items():
        expected = {
            "adler32": f"adler32={zlib.adler32(data):08x}",
            "md5": f"md5={b64(hashlib.md5(data, usedforsecurity=False).digest())}",
            "sha": f"sha={b64(hashlib.sha1(data, usedforsecurity=False).digest())}",
            "sha-256": f"sha-256={b64(hashlib.sha256(data).digest())}",
            "sha-512": f"sha-512={b64(hashlib.sha512(data).digest())}"}
        for algorithm, value in expected.items():
            for method in ("HEAD", "GET"):
                answer = await client.request(method, f"/home/{name}",
                                              headers={"Want-Digest": algorithm.upper()})
                assert answer.status == 200, (name, method)
                assert answer.headers["Digest"] == value, (name, algorithm, method)
                assert "Repr-Digest" not in answer.headers
                if method == "GET":
                    assert await answer.read() == data
        # A range's digest is the whole file's (RFC 3230 §4, RFC 9530 §3); the body the range.
        if data:
            ranged = await client.get(f"/home/{name}", headers={
                "Range": "bytes=1-9", "Want-Digest": "sha-256", "Want-Repr-Digest": "sha-512=4"})
            assert ranged.status == 206 and await ranged.read() == data[1:10]
            assert ranged.headers["Digest"] == expected["sha-256"]
            assert ranged.headers["Repr-Digest"] == \
                f"sha-512=:{b64(hashlib.sha512(data).digest())}:"
    assert (await client.head("/home/empty", headers={"Want-Digest": "adler32"})) \
        .headers["Digest"] == "adler32=00000001"


async def test_nothing_is_computed_unless_a_supported_digest_is_asked_for(
        aiohttp_client: AiohttpClient, tmp_path: Path, files: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_file, real_bytes = digests._of_file, digests._of_bytes
    monkeypatch.setattr(digests, "_of_file", lambda *a: calls.append("file") or real_file(*a))
    monkeypatch.setattr(digests, "_of_bytes", lambda *a: calls.append("bytes") or real_bytes(*a))
    settings = FileserverSettings(mounts=f"home={tmp_path / 'home'}")
    client = await aiohttp_client(build_app(settings, CollectorRegistry()))
    for headers in ({}, {"Want-Digest": "crc32c"}, {"Want-Digest": "md5;q=0"},
                    {"Want-Repr-Digest": "md5=9"}):
        answer = await client.get("/home/big.bin", headers=headers)
        assert answer.status == 200 and await answer.read() == files["big.bin"]
        assert "Digest" not in answer.headers and "Repr-Digest" not in answer.headers
    tag = (await client.head("/home/big.bin")).headers["ETag"]
    unchanged = await client.get("/home/big.bin", headers={"If-None-Match": tag,
                                                          "Want-Digest": "md5"})
    assert unchanged.status == 304 and "Digest" not in unchanged.headers
    assert calls == []
    await client.head("/home/big.bin", headers={"Want-Digest": "md5",
                                                "Want-Repr-Digest": "sha-256=1"})
    await client.head("/home/small.txt", headers={"Want-Digest": "md5"})
    assert calls == ["file", "bytes"]  # one read of the file for both of its digests


def test_a_file_that_changes_while_it_is_read_gets_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "growing.log"
    path.write_bytes(b"first line\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        before = os.fstat(fd)
        assert digests._of_file(fd, ["sha-256"], before) == \
            [hashlib.sha256(b"first line\n").digest()]
        with path.open("ab") as more:
            more.write(b"second line\n")
        assert digests._of_file(fd, ["sha-256"], before) is None
    finally:
        os.close(fd)


async def test_at_most_parallel_digests_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def slow(content: bytes, algorithms: list[str]) -> list[bytes]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return [b"\0" * 4 for _ in algorithms]

    monkeypatch.setattr(digests, "_of_bytes", slow)
    pool = Digests(parallel=2)
    st = os.stat(__file__)
    answers = await asyncio.gather(*(pool.headers("adler32", None, content=b"x", fd=None, st=st)
                                     for _ in range(8)))
    assert all(a == {"Digest": "adler32=00000000"} for a in answers)
    assert most == 2
