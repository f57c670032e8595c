"""One process that has imported the file server, forking a file server per user from it.

Started as ``python -m services kubepie fileserver`` each file server paid ~0.8 s of CPU
(the interpreter, aiohttp and the rest imported again) and ~40 MiB of memory of its own.
Forked from a process that did that once, it starts in milliseconds and shares the imported
code and data with every other file server, copy-on-write (``gc.freeze`` keeps the
collector from writing to those pages). Measured in docs/kubepie.md ("A thousand users").

What the fork server may know is nothing secret: the gateway starts it with a bare
environment, and each request names the server's settings, with its token as a file only
the gateway's user can read (``FILESERVER_ACCESS_TOKEN_FILE``), read by the child before it
drops to the user's ids. Nothing of the gateway's own settings is in its memory.

Protocol on stdin/stdout, one JSON object per line. In: ``{"env": {...}}``, a file server to
start with that environment. Out, in request order: ``{"pid": n}``; and whenever a child
ends: ``{"exited": pid, "status": code}`` (negative: killed by that signal). At end of
input (the gateway stopped or died) every child still running gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import sys
import time
import traceback
from typing import Any

# The file server, imported once here: every child starts with it in memory.
from services.kubepie.fileserver.main import main as fileserver_main

STOP_GRACE = 10.0


def serve(log_fd: int) -> int:
    gc.freeze()  # what is imported so far stays shared with every child
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the gateway ends us by closing stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: set[int] = set()
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fd == wake_read:
                os.read(wake_read, 4096)
                _reap(children)
                continue
            data = os.read(sys.stdin.fileno(), 65536)
            if not data:
                _stop_all(children)
                return 0
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request: dict[str, Any] = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request["env"], log_fd)  # never returns
                children.add(pid)
                _tell({"pid": pid})


def _tell(message: dict[str, Any]) -> None:
    os.write(sys.stdout.fileno(), json.dumps(message).encode() + b"\n")


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _tell({"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _stop_all(children: set[int]) -> None:
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while children and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            _reap(children)
        except OSError:  # stdout closed: the gateway is gone; keep reaping
            for pid in list(children):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
    for pid in children:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def _child(env: dict[str, str], log_fd: int) -> None:
    """In the forked child: a new session, the gateway's log as stdout, only ``env``."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["jupyterhub-sidecars"]
        gc.enable()
        code = fileserver_main(None)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
