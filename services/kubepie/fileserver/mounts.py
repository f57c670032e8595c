"""Request paths to files inside the mounts, and nowhere else.

A request path is decoded strictly, segment by segment, before anything touches the filesystem:
no ``.``/``..`` segments (also percent-encoded), no encoded slashes, no NUL bytes, valid UTF-8
only (Python's strict decoder refuses overlong forms such as ``%c0%ae``). Symlinks are followed only
while they stay inside the mount: :func:`inside` compares real paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, quote, unquote_to_bytes, urlsplit


class BadPath(ValueError):
    """The request path is malformed or tries to leave the mounts (400)."""


class OutsideMount(PermissionError):
    """A symlink leads out of its mount (403)."""


@dataclass(frozen=True)
class Mount:
    name: str
    segments: tuple[str, ...]  # where it appears in URLs: ("groups", "xray") for /groups/xray/
    root: str  # real path of the folder, resolved at start
    read_only: bool = False

    @property
    def url(self) -> str:
        return href(self.segments, collection=True)

    def contains(self, real: str) -> bool:
        """Whether the resolved path ``real`` is this mount's folder or lies below it."""
        return real == self.root or real.startswith(self.root.rstrip("/") + "/")


@dataclass(frozen=True)
class Target:
    """What a request path names: a place in a mount, or a folder above the mounts."""

    segments: tuple[str, ...]
    mount: Mount | None  # None: a virtual folder ("/", "/groups/")
    path: str | None  # the filesystem path (symlinks not yet resolved)

    @property
    def virtual(self) -> bool:
        return self.mount is None

    @property
    def is_mount_root(self) -> bool:
        return self.mount is not None and self.segments == self.mount.segments

    @property
    def name(self) -> str:
        return self.segments[-1] if self.segments else ""

    def href(self, collection: bool = False) -> str:
        return href(self.segments, collection)


def href(segments: tuple[str, ...] | list[str], collection: bool = False) -> str:
    """The URL path of ``segments``, percent-encoded; collections end in ``/``."""
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    if collection and segments:
        path += "/"
    return path


def split_url(value: str) -> SplitResult:
    """A URL from a header (Destination, an If header's tagged resource), or BadPath (400):
    an unclosed IPv6 bracket makes urlsplit raise ValueError, which must not be a 500."""
    try:
        return urlsplit(value)
    except ValueError as exc:
        raise BadPath(f"not a URL: {exc}") from None


def decode_path(raw: str) -> tuple[str, ...]:
    """The segments of a raw request path (query removed), or :class:`BadPath`."""
    path = raw.split("?", 1)[0]
    if "#" in path:
        raise BadPath("a fragment (#) is never part of a request path")
    if not path.startswith("/"):
        raise BadPath("the path must start with /")
    segments = []
    for part in path.split("/"):
        if not part:
            continue  # "//" and the trailing "/" name the same resource
        data = unquote_to_bytes(part)
        if b"/" in data:
            raise BadPath("encoded slashes are not allowed in a path")
        if b"\0" in data:
            raise BadPath("NUL bytes are not allowed in a path")
        try:
            name = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadPath("the path is not valid UTF-8") from None
        if name in (".", ".."):
            raise BadPath("'.' and '..' are not allowed in a path")
        segments.append(name)
    return tuple(segments)


def parse_mounts(spec: str, read_only: frozenset[str] = frozenset()) -> tuple[Mount, ...]:
    """``home=/home/alice,group-xray=/groups/xray,data=/data``.

    ``group-<name>`` is served at ``/groups/<name>/``, any other name at ``/<name>/``.
    """
    mounts: list[Mount] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, folder = item.partition("=")
        name, folder = name.strip(), folder.strip()
        if not sep or not name or not folder:
            raise ValueError(f"{item!r}: expected name=/folder, e.g. home=/home/alice")
        segments = _url_segments(name)
        if not os.path.isabs(folder):
            raise ValueError(f"{item!r}: the folder must be an absolute path")
        if not os.path.isdir(folder):
            raise ValueError(f"{item!r}: {folder} is not a folder")
        if any(m.segments == segments for m in mounts):
            raise ValueError(f"{item!r}: {href(segments, True)} is given twice")
        mounts.append(Mount(name, segments, os.path.realpath(folder), name in read_only))
    if not mounts:
        raise ValueError("give at least one mount, e.g. home=/home/alice")
    unknown = read_only - {m.name for m in mounts}
    if unknown:
        raise ValueError(f"read-only names no mount: {', '.join(sorted(unknown))}")
    for mount in mounts:
        for other in mounts:
            if other is not mount and other.segments[:len(mount.segments)] == mount.segments:
                raise ValueError(f"{other.url} lies inside the mount {mount.url}")
    return tuple(mounts)


def _url_segments(name: str) -> tuple[str, ...]:
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"mount name {name!r}: use letters, digits, '-', '_' and '.'")
    if name.startswith("group-") and len(name) > len("group-"):
        return ("groups", name.removeprefix("group-"))
    return (name,)


class MountTable:
    """Finds the mount (or virtual folder) for request segments."""

    def __init__(self, mounts: tuple[Mount, ...]) -> None:
        self.mounts = mounts

    def locate(self, segments: tuple[str, ...]) -> Target | None:
        """The target for ``segments``; None when it is neither in a mount nor above one."""
        for mount in self.mounts:
            depth = len(mount.segments)
            if segments[:depth] == mount.segments:
                path = os.path.join(mount.root, *segments[depth:])
                return Target(segments, mount, path)
        if any(m.segments[:len(segments)] == segments for m in self.mounts):
            return Target(segments, None, None)
        return None

    def children_of_virtual(self, segments: tuple[str, ...]) -> list[str]:
        """Names shown inside a virtual folder: the next segment of each mount below it."""
        depth = len(segments)
        names = {m.segments[depth] for m in self.mounts
                 if len(m.segments) > depth and m.segments[:depth] == segments}
        return sorted(names)


def inside(path: str, mount: Mount) -> str:
    """The real path of ``path`` if it stays in ``mount``; :class:`OutsideMount` otherwise.

    Blocking (it resolves symlinks): call it in a worker thread.
    """
    real = os.path.realpath(path)
    if not mount.contains(real):
        raise OutsideMount(f"{Path(path).name!r} leads outside the mount {mount.url}")
    return real


def parent_inside(path: str, mount: Mount) -> str:
    """``path`` with its parent folder resolved and checked; the last segment is kept as is.

    For operations on a name itself (DELETE, MOVE, PUT over a symlink): the link is what changes,
    never the file it points to.
    """
    parent, name = os.path.split(path)
    return os.path.join(inside(parent, mount), name)
