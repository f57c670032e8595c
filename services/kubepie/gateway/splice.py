"""Moving a large response body from the file server's socket to the client's in the kernel.

Through Python, every byte of a download is copied out of the kernel and back in (and
chunked through the event loop): the proxy kept ~40 % of the file server's own GET speed.
``splice(2)`` moves the pages socket → pipe → socket without them ever reaching user space.
Used only where it is exact: plain sockets on both sides (no TLS), a body of known length,
nothing of it left in Python's buffers. Linux only; elsewhere the copy path is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket

SPLICE_AVAILABLE = hasattr(os, "splice")
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ on Linux (Python 3.10+ names it; keep the number)
PIPE_SIZE = 1 << 20  # the default /proc/sys/fs/pipe-max-size
FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2) | \
    getattr(os, "SPLICE_F_MORE", 4)


class _Totals:
    """Bytes moved by splice in this process (the gateway's /metrics reads it)."""

    moved = 0


totals = _Totals()


class BodyCutShort(Exception):
    """The file server closed its connection before the whole body was sent."""


def plain_socket(transport: asyncio.BaseTransport | None) -> int | None:
    """The file descriptor of the transport's TCP or UNIX socket when the bytes on it are
    the HTTP bytes (no TLS), else None."""
    if transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")  # asyncio's TransportSocket wrapper
    if sock is None or sock.type != socket.SOCK_STREAM:
        return None
    fd = sock.fileno()
    return fd if fd >= 0 else None


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool,
                 stall_limit: float) -> None:
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await asyncio.wait_for(future, stall_limit)
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def splice(source: int, target: int, count: int, *,
                 stall_limit: float) -> int:
    """Move ``count`` bytes from ``source`` to ``target``; the number moved.

    Both sockets stay non-blocking and owned by their transports, which must not read
    ``source`` or write ``target`` meanwhile (the caller pauses and drains them). Waits at most
    ``stall_limit`` seconds for either side at a time; BodyCutShort if ``source`` ends early,
    ConnectionResetError if the client goes away.
    """
    loop = asyncio.get_running_loop()
    # Copies of the descriptors: asyncio refuses to watch one that a transport owns.
    source, target = os.dup(source), os.dup(target)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
    moved, in_pipe = 0, 0
    try:
        while moved < count:
            if moved + in_pipe < count:  # more to take in (always so with an empty pipe)
                try:
                    got = os.splice(source, write_end,
                                    min(count - moved - in_pipe, PIPE_SIZE), flags=FLAGS)
                except BlockingIOError:
                    got = -1
                if got == 0:
                    raise BodyCutShort(f"the file server sent {moved + in_pipe} of {count} "
                                       "bytes")
                if got > 0:
                    in_pipe += got
                elif in_pipe == 0:
                    await _ready(loop, source, write=False, stall_limit=stall_limit)
                    continue
            try:
                sent = os.splice(read_end, target, in_pipe, flags=FLAGS)
            except BlockingIOError:
                await _ready(loop, target, write=True, stall_limit=stall_limit)
                continue
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise ConnectionResetError("the client went away") from exc
            moved += sent
            in_pipe -= sent
            totals.moved += sent
        return moved
    finally:
        for fd in (read_end, write_end, source, target):
            os.close(fd)
