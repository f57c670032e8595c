"""Become the user before serving a single byte.

Started as root (the local backend, or a pod whose admission set no runAsUser), the server drops
to the user's uid, gid and supplementary groups — setgroups, then setgid, then setuid, the only
order in which each call is still allowed — and then proves it cannot get root back. From then on
the kernel decides what may be read or written.
"""

from __future__ import annotations

import os


class PrivilegeError(RuntimeError):
    """Not safe to serve: still root, or asked to switch users without being root."""


def drop_privileges(uid: int | None, gid: int | None, groups: tuple[int, ...]) -> None:
    if os.geteuid() != 0:
        if uid is not None and (uid, gid) != (os.getuid(), os.getgid()):
            raise PrivilegeError(
                f"FILESERVER_UID={uid} needs the server to start as root; it runs as uid "
                f"{os.getuid()} (unset FILESERVER_UID to serve as this user)")
        return
    if uid is None or gid is None:
        raise PrivilegeError("refusing to serve files as root: set FILESERVER_UID and "
                             "FILESERVER_GID to the user's ids")
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _assert_not_root()


def _assert_not_root() -> None:
    if 0 in os.getresuid():
        raise PrivilegeError("still root after setuid")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError("could switch back to root after dropping privileges")
