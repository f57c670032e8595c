"""Checksums of a file, when a client asks for them with its GET or HEAD.

Grid transfer tools verify what they copied: ``gfal-copy -K ADLER32``, FTS and Rucio ask the
storage for the file's checksum after the copy and compare it with the source's. Over HTTP
they ask with RFC 3230's ``Want-Digest: adler32`` and read ``Digest: adler32=…`` — what
dCache, StoRM WebDAV, EOS and XRootD's HTTP answer. RFC 9530 (2024) renames the pair
``Want-Repr-Digest`` / ``Repr-Digest`` (structured fields, sha-256 and sha-512). Both are
answered here, over the whole file (a range request's digest is the whole file's too, as both
RFCs define it), computed when asked: nothing is stored beside the file, so a checksum can
never be stale. Reading a large file costs what reading it costs, so at most ``PARALLEL``
digests run at a time per server, in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import os
import zlib
from collections.abc import Callable
from typing import Protocol

CHUNK = 4 << 20
PARALLEL = 2


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _Adler32:
    """zlib's running Adler-32, shaped like a hashlib object."""

    def __init__(self) -> None:
        self.value = 1

    def update(self, data: bytes | memoryview, /) -> None:
        self.value = zlib.adler32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


# RFC 3230's names (IANA "HTTP Digest Algorithm Values"), lower case, and how each value is
# written: ADLER32 as 8 hex digits, the others base64 (RFC 3230 §4.1.1, RFC 5843).
# md5 and sha-1 are checksums here, not security (hence usedforsecurity=False: FIPS systems).
LEGACY: dict[str, Callable[[], _Hash]] = {
    "adler32": _Adler32, "md5": functools.partial(hashlib.md5, usedforsecurity=False),
    "sha": functools.partial(hashlib.sha1, usedforsecurity=False),
    "sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
# RFC 9530's active algorithms (its registry marks md5, sha and adler as deprecated).
CURRENT = frozenset(("sha-256", "sha-512"))


def wanted_legacy(header: str) -> str | None:
    """The algorithm to answer ``Want-Digest`` with: the supported one of highest q (the
    first of equals), never one with q=0; None when none is supported."""
    best, best_q = None, 0.0
    for item in header.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # an unreadable weight: not what the client asked for
        if name in LEGACY and 0 < q <= 1 and q > best_q:
            best, best_q = name, q
    return best


def wanted_current(header: str) -> str | None:
    """The algorithm to answer ``Want-Repr-Digest`` with: a dictionary of preferences 1 to 10
    (0: not acceptable); the highest supported one, None when none."""
    best, best_preference = None, 0
    for item in header.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        try:
            preference = int(value.strip())
        except ValueError:
            continue
        if name in CURRENT and 0 < preference <= 10 and preference > best_preference:
            best, best_preference = name, preference
    return best


def legacy_value(algorithm: str, raw: bytes) -> str:
    encoded = raw.hex() if algorithm == "adler32" else base64.b64encode(raw).decode()
    return f"{algorithm}={encoded}"


def current_value(algorithm: str, raw: bytes) -> str:
    return f"{algorithm}=:{base64.b64encode(raw).decode()}:"


def _of_file(fd: int, algorithms: list[str], expected: os.stat_result) -> list[bytes] | None:
    """Every algorithm's digest of the open file in one read; None when the file changed
    while it was read (a digest of neither version would be worse than none)."""
    hashes = [LEGACY[name]() for name in algorithms]
    buffer = bytearray(CHUNK)  # one buffer, read into again and again
    view = memoryview(buffer)
    offset = 0
    while read := os.preadv(fd, [buffer], offset):
        for running in hashes:
            running.update(view[:read])
        offset += read
    after = os.fstat(fd)
    if (after.st_mtime_ns, after.st_size) != (expected.st_mtime_ns, expected.st_size) \
            or offset != expected.st_size:
        return None
    return [running.digest() for running in hashes]


def _of_bytes(content: bytes, algorithms: list[str]) -> list[bytes]:
    digests = []
    for name in algorithms:
        running = LEGACY[name]()
        running.update(content)
        digests.append(running.digest())
    return digests


class Digests:
    """Computes the digests a request asks for, ``PARALLEL`` at a time."""

    def __init__(self, parallel: int = PARALLEL) -> None:
        self._slots = asyncio.Semaphore(parallel)  # binds to the loop on first use

    async def headers(self, want_legacy: str | None, want_current: str | None, *,
                      content: bytes | None, fd: int | None,
                      st: os.stat_result) -> dict[str, str]:
        """``Digest`` and ``Repr-Digest`` for the file (given whole, or as an open descriptor),
        as asked; empty when nothing supported was asked or the file changed meanwhile."""
        legacy = wanted_legacy(want_legacy) if want_legacy else None
        current = wanted_current(want_current) if want_current else None
        algorithms = list(dict.fromkeys(a for a in (legacy, current) if a))
        if not algorithms:
            return {}
        async with self._slots:
            if content is not None:
                raws: list[bytes] | None = await asyncio.to_thread(_of_bytes, content,
                                                                   algorithms)
            elif fd is not None:
                raws = await asyncio.to_thread(_of_file, fd, algorithms, st)
            else:
                return {}
        if raws is None:
            return {}
        found = dict(zip(algorithms, raws, strict=True))
        headers = {}
        if legacy:
            headers["Digest"] = legacy_value(legacy, found[legacy])
        if current:
            headers["Repr-Digest"] = current_value(current, found[current])
        return headers
