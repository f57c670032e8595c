"""A share link, served by the owner's file server as the owner's uid, read-only.

The gateway forwards a link's requests with the link's public prefix
(``/_kubepie/s/<token>/``) as the request path, and names the shared folder or file in
``X-Kubepie-Share`` (a path of this server, as in its URLs) and the prefix in
``X-Kubepie-Share-Prefix``. The file server then serves that request from a view with a single
read-only mount: the shared folder, resolved here (symlinks and all, inside the owner's mount),
published at the prefix. So everything the server checks for its own mounts — raw paths decoded
strictly, ``..`` refused, symlinks leaving the folder refused or hidden, the kernel's
permissions — holds within the shared folder, and listings and PROPFIND answers name the
link's URLs. Only the gateway can send these headers (every request carries its token).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

from aiohttp import web

from services.kubepie.fileserver.context import Dav, forbidden
from services.kubepie.fileserver.mounts import Mount, MountTable, decode_path, inside

SHARE_HEADER = "X-Kubepie-Share"
PREFIX_HEADER = "X-Kubepie-Share-Prefix"
READ_METHODS = frozenset({"GET", "HEAD", "PROPFIND", "OPTIONS"})


async def share_view(dav: Dav, request: web.Request) -> Dav | None:
    """The view a share link's request is served from, or None for an ordinary request."""
    shared = request.headers.get(SHARE_HEADER)
    if shared is None:
        return None
    if request.method not in READ_METHODS:
        raise forbidden("a share link is read-only")
    prefix = decode_path(request.headers.get(PREFIX_HEADER, ""))
    if not prefix or decode_path(request.raw_path)[:len(prefix)] != prefix:
        raise web.HTTPBadRequest(text="the request is not below the share's prefix\n")
    target = dav.mounts.locate(decode_path(shared))
    if target is None or target.mount is None or target.path is None:
        raise web.HTTPNotFound(text="the shared folder is gone\n")
    real = await asyncio.to_thread(inside, target.path, target.mount)
    if not await asyncio.to_thread(os.path.exists, real):
        raise web.HTTPNotFound(text="the shared folder is gone\n")
    mount = Mount("share", prefix, real, read_only=True)
    return replace(dav, mounts=MountTable((mount,)))
