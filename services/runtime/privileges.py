"""Become the user before serving a single byte.

Started as root (the embedded default's local processes, or a pod whose admission set no
runAsUser), a service drops to its uid, gid and supplementary groups — setgroups, then setgid,
then setuid, the only order in which each call is still allowed — and then proves it cannot
get root back. From then on the kernel decides what may be read or written. The change of
credentials also makes the process non-dumpable: other processes of the same uid (the
notebook, for a sidecar running as the notebook's user) can no longer read its memory,
environment or open files through /proc or ptrace.
"""

from __future__ import annotations

import os


class PrivilegeError(RuntimeError):
    """Not safe to serve: still root, or asked to switch users without being root."""


def drop_privileges(uid: int | None, gid: int | None, groups: tuple[int, ...],
                    *, setting: str = "FILESERVER_UID",
                    refusal: str = "refusing to run as root") -> None:
    """Switch to ``uid``/``gid``/``groups`` when root; refuse to stay root without them."""
    if os.geteuid() != 0:
        if uid is not None and (uid, gid) != (os.getuid(), os.getgid()):
            raise PrivilegeError(
                f"{setting}={uid} needs the process to start as root; it runs as uid "
                f"{os.getuid()} (unset {setting} to run as this user)")
        return
    if uid is None or gid is None:
        raise PrivilegeError(f"{refusal}: set {setting} to the ids to run as")
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _assert_not_root()


def parse_ids(text: str, what: str) -> tuple[int, int, tuple[int, ...]]:
    """``uid:gid`` or ``uid:gid:g1,g2`` → (uid, gid, groups); uid and gid never 0."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        uid, gid = int(parts[0]), int(parts[1])
        groups = tuple(int(g) for g in parts[2].split(",") if g) if len(parts) == 3 else ()
    except ValueError:
        raise ValueError(f"{what}={text!r}: expected uid:gid or uid:gid:group,group") from None
    if uid <= 0 or gid <= 0 or min(groups, default=1) < 0:
        raise ValueError(f"{what}={text!r}: never root (0), never negative")
    return uid, gid, groups


def _assert_not_root() -> None:
    if 0 in os.getresuid():
        raise PrivilegeError("still root after setuid")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError("could switch back to root after dropping privileges")
