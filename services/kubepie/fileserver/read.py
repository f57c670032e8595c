"""Reading: OPTIONS, GET/HEAD (ranges, validators, sendfile) and PROPFIND (streamed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote

from aiohttp import web

from services.kubepie.fileserver import davxml, fsops, listing
from services.kubepie.fileserver.context import XML_TYPE, Dav, dav_error
from services.kubepie.fileserver.locks import Lock, Segments
from services.kubepie.fileserver.mounts import Target
from services.kubepie.fileserver.props import (
    ALLPROP_LIVE,
    LOCKDISCOVERY,
    QUOTA_AVAILABLE,
    QUOTA_USED,
    allprop_live_xml,
    content_type,
    dead_properties,
    etag,
    http_date,
    live_properties,
    propname_xml,
    quota_properties,
)

SMALL_FILE = 256 * 1024  # read whole in the worker thread: faster than sendfile for small files
READ_METHODS = "OPTIONS, GET, HEAD, PROPFIND"
WRITE_METHODS = "PUT, DELETE, MKCOL, COPY, MOVE, PROPPATCH, LOCK, UNLOCK"

# A downloaded file is never rendered as a page of this origin (the gateway's login lives here).
DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


async def options(dav: Dav, request: web.Request) -> web.Response:
    allowed = READ_METHODS
    if request.raw_path != "*":
        target = dav.target(request)
        if target.mount is not None and not target.mount.read_only:
            allowed = f"{READ_METHODS}, {WRITE_METHODS}"
    return web.Response(headers={"DAV": "1, 2", "Allow": allowed, "MS-Author-Via": "DAV",
                                 "Accept-Ranges": "bytes"})


# -- GET / HEAD -------------------------------------------------------------------------------

async def get(dav: Dav, request: web.Request) -> web.StreamResponse:
    target = dav.target(request)
    if target.mount is None or target.path is None:
        return _listing_response(target, [], dav.mounts.children_of_virtual(target.segments))
    opened: fsops.OpenedFile | fsops.Found | None = dav.cached.read(
        target.mount, target.segments[len(target.mount.segments):])
    if opened is None:  # not certain to be cached: a worker thread opens and judges it
        opened = await dav.io.run(fsops.open_for_read, target.path, target.mount, SMALL_FILE)
    if opened is None:
        raise web.HTTPNotFound()
    if isinstance(opened, fsops.Found):
        if not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(location=target.href(collection=True))
        iterator = fsops.scan(opened.real, target.mount, batch=4096)
        entries = await asyncio.to_thread(_collect, iterator)
        return _listing_response(target, entries, [])
    return await _send_file(dav, request, target, opened)


def _collect(batches: Iterator[list[fsops.Entry]]) -> list[fsops.Entry]:
    return [entry for batch in batches for entry in batch]


def _listing_response(target: Target, entries: list[fsops.Entry],
                      names: list[str]) -> web.Response:
    page = listing.render(target.href(collection=True), entries, names)
    return web.Response(text=page, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": listing.LISTING_CSP,
                                 "X-Content-Type-Options": "nosniff"})


async def _send_file(dav: Dav, request: web.Request, target: Target,
                     opened: fsops.OpenedFile) -> web.StreamResponse:
    st = opened.st
    tag = etag(st)
    try:
        status = _validate(request, tag, st.st_mtime)
        if status:
            return web.Response(status=status, headers={"ETag": tag,
                                                        "Last-Modified": http_date(st.st_mtime)})
        span = _byte_range(request, tag, st.st_mtime, st.st_size)
        start, end = span or (0, st.st_size)
        headers = {"ETag": tag, "Last-Modified": http_date(st.st_mtime),
                   "Accept-Ranges": "bytes", "Content-Type": content_type(target.name),
                   "Content-Disposition": _disposition(target.name), **DOWNLOAD_HEADERS}
        if span:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{st.st_size}"
        status = 206 if span else 200
        wanted, wanted_repr = request.headers.get("Want-Digest"), \
            request.headers.get("Want-Repr-Digest")
        if wanted or wanted_repr:  # gfal2, FTS, Rucio: the whole file's checksum
            headers.update(await dav.digests.headers(
                wanted, wanted_repr, content=opened.content, st=st,
                fd=opened.handle.fileno() if opened.handle is not None else None))
        if opened.content is not None:
            # aiohttp sends no body for HEAD, but the Content-Length of this one.
            return web.Response(status=status, body=opened.content[start:end], headers=headers)
        stream = web.StreamResponse(status=status, headers=headers)
        stream.content_length = end - start
        await stream.prepare(request)
        if request.method != "HEAD" and end > start and opened.handle is not None:
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("client went away")
            await asyncio.get_running_loop().sendfile(
                transport, opened.handle, start, end - start)
        await stream.write_eof()
        return stream
    finally:
        if opened.handle is not None:
            await asyncio.to_thread(opened.close)


def _disposition(name: str) -> str:
    fallback = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _validate(request: web.Request, tag: str, mtime: float) -> int:
    """The status the validators of a GET ask for (412, 304), or 0 to send the file."""
    if_match = request.headers.get("If-Match")
    if if_match is not None and "*" not in if_match and tag not in _tags(if_match):
        return 412
    since = _date(request.headers.get("If-Unmodified-Since"))
    if if_match is None and since is not None and int(mtime) > since:
        return 412
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        if "*" in if_none_match or tag in _tags(if_none_match):
            return 304
        return 0
    modified = _date(request.headers.get("If-Modified-Since"))
    if modified is not None and int(mtime) <= modified:
        return 304
    return 0


def _tags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",")]


def _date(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None


def _byte_range(request: web.Request, tag: str, mtime: float,
                size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (start, end) with end exclusive; None serves the whole file."""
    header = request.headers.get("Range")
    if not header or not header.startswith("bytes=") or "," in header:
        return None  # no range, another unit, or several ranges: the whole file (RFC 9110)
    if_range = request.headers.get("If-Range")
    if if_range is not None:
        if if_range.startswith('"') and if_range != tag:
            return None
        stamp = _date(if_range) if not if_range.startswith(('"', "W/")) else None
        if not if_range.startswith('"') and (stamp is None or int(mtime) > stamp):
            return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            length = int(last)
            if length <= 0:
                raise ValueError
            return (max(0, size - length), size) if size else _unsatisfiable(size)
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None  # malformed: ignore it
    if start >= size or end <= start:
        return _unsatisfiable(size)
    return start, min(end, size)


def _unsatisfiable(size: int) -> tuple[int, int]:
    raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})


# -- PROPFIND ---------------------------------------------------------------------------------

@dataclass
class Resource:
    segments: Segments
    href: str
    name: str
    st: os.stat_result | None  # None: a folder above the mounts
    collection: bool
    path: str | None


EMPTY_LOCKDISCOVERY = "<D:lockdiscovery></D:lockdiscovery>"


class PropfindRenderer:
    """Turns resources into ``<D:response>`` elements for one PROPFIND request."""

    def __init__(self, query: davxml.PropfindRequest, locks: list[Lock]) -> None:
        self.query = query
        self.locks = locks
        names = set(query.names)
        self.want_dead = query.kind != "prop" or bool(names - set(ALLPROP_LIVE)
                                                      - {QUOTA_AVAILABLE, QUOTA_USED})
        self.want_quota = bool(names & {QUOTA_AVAILABLE, QUOTA_USED})

    def render(self, resource: Resource) -> str:
        """Blocking (xattrs, statvfs): runs in a worker thread for listings."""
        if self.query.kind == "allprop" and not self.query.names and resource.st is not None \
                and not any(lock.covers(resource.segments) for lock in self.locks):
            return self._render_plain_allprop(resource, resource.st)
        props = live_properties(resource.name, resource.st, collection=resource.collection)
        props[LOCKDISCOVERY] = ("<D:lockdiscovery>" + "".join(
            lock.active_lock_xml() for lock in self.locks if lock.covers(resource.segments))
            + "</D:lockdiscovery>")
        if self.want_quota and resource.path and resource.collection:
            with contextlib.suppress(OSError):
                props.update(quota_properties(resource.path))
        dead = dead_properties(resource.path) if self.want_dead and resource.path else {}
        if self.query.kind == "propname":
            return davxml.response(resource.href, {200: propname_xml([*props, *dead])})
        if self.query.kind == "allprop":
            found = [*props.values(), *dead.values()]
            extra = [n for n in self.query.names if n not in props and n not in dead]
            return davxml.response(resource.href, {
                200: found + [props[n] for n in self.query.names if n in props
                              and n not in ALLPROP_LIVE],
                404: propname_xml(extra)})
        ok, missing = [], []
        for name in self.query.names:
            value = props.get(name) or dead.get(name)
            if value is None:
                missing.append(davxml.empty_element(name))
            else:
                ok.append(value)
        return davxml.response(resource.href, {200: ok, 404: missing})

    def _render_plain_allprop(self, resource: Resource, st: os.stat_result) -> str:
        """The same answer as the general path for allprop of an unlocked resource, in fewer
        steps (a listing is thousands of these)."""
        dead = dead_properties(resource.path) if resource.path else {}
        live = allprop_live_xml(resource.name, st, collection=resource.collection)
        return davxml.response(resource.href, {
            200: [live, EMPTY_LOCKDISCOVERY, *dead.values()]})

    def render_batch(self, resources: list[Resource]) -> bytes:
        return "".join(self.render(r) for r in resources).encode()


def propfind_depth(header: str | None) -> str:
    """"0" or "1". Without a Depth header, 1 — what SabreDAV (Nextcloud, ownCloud) does, and
    what clients that leave it out expect: fsspec/webdav4's exists/isdir/info and pandas
    reading a file through it send a bare PROPFIND (RFC 4918's default, infinity, would make
    them fail). An explicit ``infinity`` is refused with 403 and the RFC's
    ``propfind-finite-depth`` (a walk of a whole home; Apache answers the same): a client that
    asks for everything must not silently get one level. Anything else is a 400."""
    if header is None:
        return "1"
    depth = header.strip().lower()
    if depth == "infinity":
        raise dav_error(web.HTTPForbidden, "propfind-finite-depth")
    if depth not in ("0", "1"):
        raise web.HTTPBadRequest(text="Depth must be 0, 1 or infinity\n")
    return depth


async def propfind(dav: Dav, request: web.Request) -> web.StreamResponse:
    target = dav.target(request)
    depth = propfind_depth(request.headers.get("Depth"))
    query = davxml.parse_propfind(await dav.read_xml_body(request))
    renderer = PropfindRenderer(query, dav.locks.within(target.segments))
    if target.mount is None:
        resources = [Resource(target.segments, target.href(True), target.name, None, True, None)]
        if depth == "1":
            resources += await asyncio.to_thread(_virtual_children, dav, target)
        body = davxml.MULTISTATUS_OPEN + "".join(renderer.render(r) for r in resources)
        return web.Response(status=207, text=body + davxml.MULTISTATUS_CLOSE,
                            content_type="application/xml", charset="utf-8")
    assert target.path is not None
    found = await asyncio.to_thread(fsops.find, target.path, target.mount)
    if found is None:
        raise web.HTTPNotFound()
    me = Resource(target.segments, target.href(found.collection), target.name, found.st,
                  found.collection, found.real)
    if depth == "0" or not found.collection:
        body = davxml.MULTISTATUS_OPEN + await asyncio.to_thread(renderer.render, me)
        return web.Response(status=207, text=body + davxml.MULTISTATUS_CLOSE,
                            content_type="application/xml", charset="utf-8")
    return await _stream_members(request, target, found, me, renderer)


async def _stream_members(request: web.Request, target: Target, found: fsops.Found,
                          me: Resource, renderer: PropfindRenderer) -> web.StreamResponse:
    """Depth 1 of a folder: written batch by batch while the folder is still being read."""
    assert target.mount is not None
    response = web.StreamResponse(status=207, headers={"Content-Type": XML_TYPE})
    batches = fsops.scan(found.real, target.mount)
    base = target.href(collection=True)

    def next_batch() -> bytes | None:
        batch = next(batches, None)
        if batch is None:
            return None
        return renderer.render_batch([
            Resource((*target.segments, e.name),
                     base + quote(e.name, safe="") + ("/" if e.collection else ""),
                     e.name, e.st, e.collection, os.path.join(found.real, e.name))
            for e in batch])

    def start() -> bytes:
        # The folder is opened before the 207 goes out: an unreadable one is still a 403.
        members = next_batch() or b""
        return (davxml.MULTISTATUS_OPEN + renderer.render(me)).encode() + members

    try:
        first = await asyncio.to_thread(start)
        await response.prepare(request)
        await response.write(first)
        while (chunk := await asyncio.to_thread(next_batch)) is not None:
            await response.write(chunk)
        await response.write(davxml.MULTISTATUS_CLOSE.encode())
    finally:
        await asyncio.to_thread(batches.close)
    await response.write_eof()
    return response


def _virtual_children(dav: Dav, target: Target) -> list[Resource]:
    children = []
    for name in dav.mounts.children_of_virtual(target.segments):
        child = dav.mounts.locate((*target.segments, name))
        if child is None:
            continue
        st = os.stat(child.mount.root) if child.mount is not None else None
        children.append(Resource(child.segments, child.href(True), name, st, True,
                                 child.mount.root if child.mount else None))
    return children
