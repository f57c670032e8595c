"""``python -m services.hub.local_session``: start a local notebook as its user.

What a pod gives a notebook container, done for a local process by a root launcher: a mount
namespace of its own in which files are bind-mounted read-only over the machine's (the user's
passwd/group entries over ``/etc/passwd`` and ``/etc/group``; LXCFS' views of ``/proc``),
the server's own cgroup (services/hub/local_cgroup.py), then the user's uid, gid and
supplementary groups, ``$HOME`` as the working folder, and ``exec`` of the notebook server.
The machine's own files are untouched; other processes do not see the mounts.

    python -m services.hub.local_session --ids 1001:1001:5000 --home /home/alice \\
        --bind /run/x/passwd:/etc/passwd --bind /run/x/group:/etc/group -- jupyterhub-singleuser
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.runtime.privileges import drop_privileges, parse_ids

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def private_mounts() -> None:
    """A mount namespace of our own whose changes never propagate back to the machine."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")


def bind_read_only(source: str, target: str) -> None:
    libc = _libc()
    _check(libc.mount(source.encode(), target.encode(), None, MS_BIND, None),
           f"bind {source} on {target}")
    _check(libc.mount(None, target.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None),
           f"read-only {target}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.hub.local_session")
    parser.add_argument("--ids", help="uid:gid[:group,group]; without: stay who we are")
    parser.add_argument("--home", help="the user's home folder")
    parser.add_argument("--bind", action="append", default=[], metavar="SOURCE:TARGET",
                        help="a file or folder mounted read-only over TARGET")
    parser.add_argument("--cgroup-procs", action="append", default=[], metavar="FILE",
                        help="a cgroup.procs file to move into before anything else")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    ids = parse_ids(args.ids, "--ids") if args.ids else None
    for procs in args.cgroup_procs:  # first: everything started from here is inside
        Path(procs).write_text(str(os.getpid()))
    if os.geteuid() == 0:
        private_mounts()
        for spec in args.bind:
            source, _, target = spec.partition(":")
            bind_read_only(source, target)
        if ids is not None:
            drop_privileges(*ids, setting="--ids")
    if args.home:
        os.chdir(args.home)
        os.environ["HOME"] = args.home
    os.execvp(command[0], command)  # noqa: S606 - the notebook server, as the user


if __name__ == "__main__":
    sys.exit(main())
