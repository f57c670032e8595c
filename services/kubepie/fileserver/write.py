"""Changing: PUT (streamed, atomic), DELETE, MKCOL, COPY, MOVE and PROPPATCH."""

from __future__ import annotations

import asyncio
import errno
import os
from urllib.parse import quote

from aiohttp import web

from services.kubepie.fileserver import davxml, fsops
from services.kubepie.fileserver.context import Dav, http_preconditions
from services.kubepie.fileserver.mounts import OutsideMount, Target
from services.kubepie.fileserver.props import (
    PROTECTED,
    etag,
    remove_dead_property,
    set_dead_property,
)

WRITE_BATCH = 1 << 20  # bytes gathered before one write in a worker thread


async def _find(target: Target) -> fsops.Found | None:
    assert target.mount is not None and target.path is not None
    return await asyncio.to_thread(fsops.find, target.path, target.mount)


# -- PUT --------------------------------------------------------------------------------------

async def put(dav: Dav, request: web.Request) -> web.Response:
    target = dav.writable(dav.target(request))
    assert target.mount is not None and target.path is not None
    if "Content-Range" in request.headers:
        raise web.HTTPBadRequest(text="partial PUT (Content-Range) is not supported\n")
    limit = dav.settings.max_upload_bytes
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        raise _too_large(limit, length)
    found = await _find(target)
    if found is not None and found.collection:
        raise web.HTTPMethodNotAllowed("PUT", ["GET", "PROPFIND"], text="a folder is there\n")
    http_preconditions(request, etag(found.st) if found else None)
    await dav.check_write(request, target, parent=found is None)
    try:
        upload = await asyncio.to_thread(fsops.Upload, target.path, target.mount,
                                         fsync=dav.settings.fsync)
    except FileNotFoundError:
        raise web.HTTPConflict(text="the parent folder does not exist\n") from None
    except NotADirectoryError:
        raise web.HTTPConflict(text="the parent is not a folder\n") from None
    try:
        await _receive(request, upload, limit)
        if length is not None and upload.size != length:
            raise web.HTTPBadRequest(text="the body ended before Content-Length\n")
        await asyncio.to_thread(upload.commit)
    except BaseException:
        await asyncio.to_thread(upload.abort)
        raise
    st = await asyncio.to_thread(os.stat, upload.target)
    return web.Response(status=204 if upload.existed else 201, headers={"ETag": etag(st)})


async def _receive(request: web.Request, upload: fsops.Upload, limit: int | None) -> None:
    """Read the body while the previous megabyte is written by a worker thread."""
    pending: asyncio.Future[None] | None = None
    chunks: list[bytes] = []
    gathered = received = 0
    while True:
        chunk = await request.content.readany()
        if chunk:
            received += len(chunk)
            if limit is not None and received > limit:
                raise _too_large(limit, received)
            chunks.append(chunk)
            gathered += len(chunk)
        if gathered >= WRITE_BATCH or (not chunk and chunks):
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(asyncio.to_thread(upload.write, chunks))
            chunks, gathered = [], 0
        if not chunk:
            break
    if pending is not None:
        await pending


def _too_large(limit: int, size: int) -> web.HTTPRequestEntityTooLarge:
    error = web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
    error.force_close()  # the rest of the body is not read
    return error


# -- DELETE, MKCOL ----------------------------------------------------------------------------

async def delete(dav: Dav, request: web.Request) -> web.Response:
    target = dav.writable(dav.target(request))
    assert target.mount is not None and target.path is not None
    if request.headers.get("Depth", "infinity").lower() != "infinity":
        raise web.HTTPBadRequest(text="DELETE needs Depth: infinity\n")
    exists = await asyncio.to_thread(fsops.lexists, target.path)
    if not exists:
        raise web.HTTPNotFound()
    try:
        found = await _find(target)
    except OutsideMount:
        found = None  # a link leading out of the mount: DELETE removes the link itself
    http_preconditions(request, etag(found.st) if found and not found.collection else None)
    await dav.check_write(request, target, deep=True)
    failures = await asyncio.to_thread(fsops.remove, target.path, target.mount)
    dav.locks.forget_below(target.segments)
    if not failures:
        return web.Response(status=204)
    root = target.mount.root
    body = "".join(davxml.status_response(
        target.mount.url + quote(path.removeprefix(root).lstrip("/")), _status_of(error))
        for path, error in failures)
    return web.Response(status=207, text=davxml.MULTISTATUS_OPEN + body
                        + davxml.MULTISTATUS_CLOSE, content_type="application/xml",
                        charset="utf-8")


def _status_of(error: OSError) -> int:
    return 403 if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else 409


async def mkcol(dav: Dav, request: web.Request) -> web.Response:
    target = dav.target(request)
    if target.mount is None or target.is_mount_root:
        raise web.HTTPMethodNotAllowed("MKCOL", ["PROPFIND"], text="the folder exists\n")
    dav.writable(target)
    assert target.path is not None
    if await request.content.read(1):
        raise web.HTTPUnsupportedMediaType(text="MKCOL with a body is not supported\n")
    if await asyncio.to_thread(fsops.lexists, target.path):
        raise web.HTTPMethodNotAllowed("MKCOL", ["PROPFIND"], text="it exists already\n")
    await dav.check_write(request, target)
    try:
        await asyncio.to_thread(fsops.make_collection, target.path, target.mount)
    except (FileNotFoundError, NotADirectoryError):
        raise web.HTTPConflict(text="the parent folder does not exist\n") from None
    return web.Response(status=201)


# -- COPY, MOVE -------------------------------------------------------------------------------

async def copy(dav: Dav, request: web.Request) -> web.Response:
    return await _copy_or_move(dav, request, move=False)


async def move(dav: Dav, request: web.Request) -> web.Response:
    return await _copy_or_move(dav, request, move=True)


async def _copy_or_move(dav: Dav, request: web.Request, *, move: bool) -> web.Response:
    source = dav.target(request)
    if move:
        dav.writable(source)
    if source.mount is None or source.path is None:
        raise web.HTTPForbidden(text="the folders above the mounts cannot be copied\n")
    destination = dav.writable(dav.destination(request))
    assert destination.mount is not None and destination.path is not None
    depth = request.headers.get("Depth", "infinity").lower()
    if depth not in (("infinity",) if move else ("0", "infinity")):
        raise web.HTTPBadRequest(text=f"Depth: {depth} is not allowed for {request.method}\n")
    overwrite = request.headers.get("Overwrite", "T").upper()
    if overwrite not in ("T", "F"):
        raise web.HTTPBadRequest(text="Overwrite must be T or F\n")
    if destination.segments == source.segments:
        raise web.HTTPForbidden(text="source and destination are the same\n")
    if destination.segments[:len(source.segments)] == source.segments:
        raise web.HTTPForbidden(text="the destination lies inside the source\n")
    if source.segments[:len(destination.segments)] == destination.segments:
        raise web.HTTPConflict(text="the source lies inside the destination\n")
    found = await _find(source)
    if found is None and not (move and await asyncio.to_thread(fsops.lexists, source.path)):
        raise web.HTTPNotFound()
    http_preconditions(request, etag(found.st) if found and not found.collection else None)
    lists = (await dav.check_write(request, source, deep=True) if move
             else dav.if_lists(request))
    dav.require_tokens(request, dav.locks.within(destination.segments), lists)
    dav.require_tokens(request, dav.locks.rooted_at(destination.segments[:-1]), lists)
    existed = await asyncio.to_thread(fsops.lexists, destination.path)
    if existed:
        if overwrite == "F":
            raise web.HTTPPreconditionFailed(text="the destination exists (Overwrite: F)\n")
        await asyncio.to_thread(fsops.remove, destination.path, destination.mount)
        dav.locks.forget_below(destination.segments)
    try:
        if move:
            await asyncio.to_thread(fsops.move, source.path, destination.path, source.mount,
                                    destination.mount)
            dav.locks.forget_below(source.segments)
        else:
            await asyncio.to_thread(fsops.copy, source.path, destination.path, source.mount,
                                    destination.mount, infinite=depth == "infinity")
    except (FileNotFoundError, NotADirectoryError):
        raise web.HTTPConflict(text="the destination's parent folder does not exist\n") \
            from None
    return web.Response(status=204 if existed else 201)


# -- PROPPATCH --------------------------------------------------------------------------------

async def proppatch(dav: Dav, request: web.Request) -> web.Response:
    target = dav.target(request)
    if target.mount is None or target.mount.read_only:
        raise web.HTTPForbidden(text="properties cannot change here\n")
    assert target.path is not None
    updates = davxml.parse_propertyupdate(await dav.read_xml_body(request))
    found = await _find(target)
    if found is None:
        raise web.HTTPNotFound()
    await dav.check_write(request, target, parent=False)
    protected = [u for u in updates if u.element.tag in PROTECTED]
    results: dict[int, list[str]] = {}
    if protected:
        # All or nothing (RFC 4918 §9.2): nothing is applied if one change is refused.
        for update in updates:
            code = 403 if update in protected else 424
            results.setdefault(code, []).append(davxml.empty_element(update.element.tag))
    else:
        results = await asyncio.to_thread(_apply, found.real, updates)
    body = davxml.response(target.href(found.collection), results)
    return web.Response(status=207, text=davxml.MULTISTATUS_OPEN + body
                        + davxml.MULTISTATUS_CLOSE, content_type="application/xml",
                        charset="utf-8")


def _apply(path: str, updates: list[davxml.PropertyUpdate]) -> dict[int, list[str]]:
    results: dict[int, list[str]] = {}
    failed = False
    for update in updates:
        name = davxml.empty_element(update.element.tag)
        if failed:
            results.setdefault(424, []).append(name)
            continue
        try:
            if update.operation == "set":
                set_dead_property(path, update.element)
            else:
                remove_dead_property(path, update.element.tag)
            results.setdefault(200, []).append(name)
        except OSError as exc:
            failed = True
            code = 403 if exc.errno in (errno.EACCES, errno.EPERM) else 507
            results.setdefault(code, []).append(name)
    return results
