"""LOCK (new, refresh, on unmapped URLs) and UNLOCK."""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.kubepie.fileserver import davxml, fsops
from services.kubepie.fileserver.context import Dav, HTTPLocked, dav_error
from services.kubepie.fileserver.ifheader import submitted_tokens
from services.kubepie.fileserver.locks import Lock, LockConflict


def _answer(lock: Lock, status: int) -> web.Response:
    body = (f'{davxml.XML_HEAD}<D:prop xmlns:D="DAV:"><D:lockdiscovery>'
            f"{lock.active_lock_xml()}</D:lockdiscovery></D:prop>\n")
    return web.Response(status=status, text=body, content_type="application/xml",
                        charset="utf-8", headers={"Lock-Token": f"<{lock.token}>"})


async def lock(dav: Dav, request: web.Request) -> web.Response:
    target = dav.target(request)
    if target.mount is None or target.path is None:
        raise web.HTTPForbidden(text="the folders above the mounts cannot be locked\n")
    if target.mount.read_only:
        raise web.HTTPForbidden(text=f"{target.mount.url} is read-only\n")
    body = await dav.read_xml_body(request)
    timeout = dav.locks.timeout_for(request.headers.get("Timeout"))
    if not body.strip():
        return _refresh(dav, request, target.segments, timeout)
    info = davxml.parse_lockinfo(body)
    depth = request.headers.get("Depth", "infinity").lower()
    if depth not in ("0", "infinity"):
        raise web.HTTPBadRequest(text="LOCK needs Depth 0 or infinity\n")
    lists = dav.if_lists(request)
    await dav.check_if(request, target, lists)
    exists = await asyncio.to_thread(fsops.lexists, target.path)
    if not exists:
        dav.writable(target)
        dav.require_tokens(request, dav.locks.rooted_at(target.segments[:-1]), lists)
    found = await asyncio.to_thread(fsops.find, target.path, target.mount) if exists else None
    collection = found is not None and found.collection
    try:
        new = dav.locks.lock(target.segments, target.href(collection), exclusive=info.exclusive,
                             infinite=depth == "infinity", owner=info.owner, timeout=timeout)
    except LockConflict:
        raise dav_error(HTTPLocked, "no-conflicting-lock", target.href(collection)) from None
    if exists:
        return _answer(new, 200)
    try:
        await asyncio.to_thread(fsops.create_empty, target.path, target.mount)
    except BaseException as exc:
        dav.locks.unlock(new.token)
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            raise web.HTTPConflict(text="the parent folder does not exist\n") from None
        raise
    return _answer(new, 201)


def _refresh(dav: Dav, request: web.Request, segments: tuple[str, ...],
             timeout: float) -> web.Response:
    """A LOCK without a body renews the lock whose token the If header names."""
    tokens = submitted_tokens(dav.if_lists(request))
    for held in dav.locks.covering(segments):
        if held.token in tokens:
            dav.locks.refresh(held, timeout)
            return _answer(held, 200)
    raise web.HTTPPreconditionFailed(text="no lock of this resource is named in the If header\n")


async def unlock(dav: Dav, request: web.Request) -> web.Response:
    target = dav.target(request)
    token = request.headers.get("Lock-Token", "").strip()
    if not (token.startswith("<") and token.endswith(">")):
        raise web.HTTPBadRequest(text="Lock-Token: <token> is required\n")
    held = dav.locks.get(token[1:-1])
    if held is None or not held.covers(target.segments):
        raise dav_error(web.HTTPConflict, "lock-token-matches-request-uri")
    dav.locks.unlock(held.token)
    return web.Response(status=204)
