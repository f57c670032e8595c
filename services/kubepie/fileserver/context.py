"""What every handler needs: the request's target, its body, its Destination, its conditions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from services.kubepie.fileserver import fsops
from services.kubepie.fileserver.cached_read import CachedReads
from services.kubepie.fileserver.davxml import error_body
from services.kubepie.fileserver.digests import Digests
from services.kubepie.fileserver.ifheader import (
    ConditionList,
    etags_match,
    parse_if,
    submitted_tokens,
)
from services.kubepie.fileserver.io_threads import BatchedThreads
from services.kubepie.fileserver.locks import TOKEN_SCHEME, Lock, LockManager
from services.kubepie.fileserver.mounts import MountTable, Target, decode_path, split_url
from services.kubepie.fileserver.props import etag
from services.kubepie.fileserver.settings import FileserverSettings

XML_TYPE = "application/xml; charset=utf-8"
DEFAULT_PORTS = {"http": "80", "https": "443"}


class HTTPLocked(web.HTTPClientError):
    """423 Locked (RFC 4918 §11.3); aiohttp has no class for it."""

    status_code = 423


def dav_error(status: type[web.HTTPException], condition: str,
              href: str | None = None) -> web.HTTPException:
    """An HTTP error carrying a RFC 4918 precondition element."""
    return status(text=error_body(condition, href), content_type="application/xml")


def forbidden(reason: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(text=reason + "\n")


@dataclass
class Dav:
    settings: FileserverSettings
    mounts: MountTable
    locks: LockManager
    io: BatchedThreads
    cached: CachedReads
    digests: Digests = field(default_factory=Digests)

    # -- targets --------------------------------------------------------------------------------

    def target(self, request: web.Request) -> Target:
        target = self.mounts.locate(decode_path(request.raw_path))
        if target is None:
            raise web.HTTPNotFound(text="no such mount\n")
        return target

    def writable(self, target: Target) -> Target:
        """``target`` if it may change: inside a read-write mount, not a mount's own folder."""
        if target.mount is None:
            raise forbidden("the folders above the mounts cannot change")
        if target.mount.read_only:
            raise forbidden(f"{target.mount.url} is read-only")
        if target.is_mount_root:
            raise forbidden(f"{target.mount.url} is a mount; change what is inside it")
        return target

    def destination(self, request: web.Request) -> Target:
        """The Destination of COPY/MOVE: same server (502 otherwise), inside the mounts."""
        header = request.headers.get("Destination")
        if not header:
            raise web.HTTPBadRequest(text="Destination header is required\n")
        url = split_url(header)
        if url.netloc and not self._same_server(request, url.scheme, url.netloc):
            raise web.HTTPBadGateway(text="Destination is on another server\n")
        target = self.mounts.locate(decode_path(url.path or "/"))
        if target is None:
            raise forbidden("Destination is outside the mounts")
        return target

    @staticmethod
    def _same_server(request: web.Request, scheme: str, netloc: str) -> bool:
        def normal(authority: str, default: str | None) -> str:
            authority = authority.lower().rsplit("@", 1)[-1]
            if default and authority.endswith(f":{default}"):
                authority = authority[: -len(default) - 1]
            return authority

        default = DEFAULT_PORTS.get(scheme.lower())
        wanted = normal(netloc, default)
        hosts = [request.host, *request.headers.getall("X-Forwarded-Host", [])]
        return any(normal(h.split(",")[0].strip(), default) == wanted for h in hosts)

    # -- bodies ---------------------------------------------------------------------------------

    async def read_xml_body(self, request: web.Request) -> bytes:
        """The request body, refused with 413 above the XML size limit (before parsing)."""
        limit = self.settings.max_xml_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        chunks, size = [], 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                response = web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
                response.force_close()
                raise response
            chunks.append(chunk)
        return b"".join(chunks)

    # -- locks and conditions -------------------------------------------------------------------

    def if_lists(self, request: web.Request) -> list[ConditionList]:
        header = request.headers.get("If")
        return parse_if(header) if header else []

    def require_tokens(self, request: web.Request, locks: list[Lock],
                       lists: list[ConditionList]) -> None:
        """423 unless the request submits a token of the locks in its way (RFC 4918 §7.5)."""
        if not locks:
            return
        tokens = submitted_tokens(lists)
        missing = [lock for lock in locks if lock.token not in tokens]
        # Submitting any one of a resource's shared locks is enough.
        if missing and (any(lock.exclusive for lock in missing) or len(missing) == len(locks)):
            raise dav_error(HTTPLocked, "lock-token-submitted", missing[0].root_href)

    async def check_if(self, request: web.Request, target: Target,
                       lists: list[ConditionList]) -> None:
        """412 unless one of the If header's lists holds (RFC 4918 §10.4)."""
        if not lists:
            return
        for condition_list in lists:
            if await self._holds(request, target, condition_list):
                return
        raise web.HTTPPreconditionFailed(text="no list of the If header holds\n")

    async def _holds(self, request: web.Request, target: Target, lst: ConditionList) -> bool:
        resource = target
        if lst.resource is not None:
            located = self.mounts.locate(decode_path(split_url(lst.resource).path or "/"))
            if located is None:
                return False
            resource = located
        tokens = {lock.token for lock in self.locks.covering(resource.segments)}
        current: str | None = None
        if any(c.etag for c in lst.conditions) and resource.mount and resource.path:
            found = await asyncio.to_thread(fsops.find, resource.path, resource.mount)
            current = etag(found.st) if found and not found.collection else None
        for condition in lst.conditions:
            if condition.token is not None:
                ok = condition.token in tokens
            else:
                ok = etags_match(current, condition.etag or "")
            if ok == condition.negated:
                return False
        return True

    async def check_write(self, request: web.Request, target: Target, *,
                          deep: bool = False, parent: bool = True) -> list[ConditionList]:
        """Lock tokens (423) and If conditions (412) for a change to ``target``.

        ``deep``: the change reaches every member (DELETE, MOVE of a folder). ``parent``: the
        change adds or removes a member of the parent folder, which its locks protect too.
        """
        lists = self.if_lists(request)
        locks = (self.locks.within if deep else self.locks.covering)(target.segments)
        try:
            await self.check_if(request, target, lists)
        except web.HTTPPreconditionFailed:
            # A lock token we do not know on a locked resource: the lock is in the way (423);
            # other failed conditions (ETags, DAV:no-lock) are 412.
            tried = {t for t in submitted_tokens(lists) if t.startswith(TOKEN_SCHEME)}
            if locks and tried and not tried & {lock.token for lock in locks}:
                raise dav_error(HTTPLocked, "lock-token-submitted", locks[0].root_href) \
                    from None
            raise
        self.require_tokens(request, locks, lists)
        if parent and len(target.segments) > 1:
            self.require_tokens(request, self.locks.rooted_at(target.segments[:-1]), lists)
        return lists


def http_preconditions(request: web.Request, current_etag: str | None) -> None:
    """If-Match / If-None-Match for changes (RFC 9110 §13): 412 when they fail."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        wanted = [t.strip() for t in if_match.split(",")]
        if current_etag is None or ("*" not in wanted and current_etag not in wanted):
            raise web.HTTPPreconditionFailed(text="If-Match failed\n")
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and current_etag is not None:
        wanted = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        if "*" in wanted or current_etag in wanted:
            raise web.HTTPPreconditionFailed(text="If-None-Match failed\n")
