"""The aiohttp application: one route, dispatched by method, errors mapped to WebDAV statuses."""

from __future__ import annotations

import errno
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from services.kubepie.fileserver import locking, read, write
from services.kubepie.fileserver.cached_read import CachedReads
from services.kubepie.fileserver.context import Dav, HTTPLocked
from services.kubepie.fileserver.davxml import BadXml
from services.kubepie.fileserver.ifheader import BadIfHeader
from services.kubepie.fileserver.io_threads import BatchedThreads
from services.kubepie.fileserver.locks import LockConflict, LockManager, SharedLockManager
from services.kubepie.fileserver.mounts import BadPath, MountTable, OutsideMount
from services.kubepie.fileserver.settings import FileserverSettings
from services.kubepie.fileserver.shares import share_view
from services.runtime.webapp import make_app

log = logging.getLogger(__name__)

Handler = Callable[[Dav, web.Request], Awaitable[web.StreamResponse]]

HANDLERS: dict[str, Handler] = {
    "OPTIONS": read.options, "GET": read.get, "HEAD": read.get, "PROPFIND": read.propfind,
    "PUT": write.put, "DELETE": write.delete, "MKCOL": write.mkcol, "COPY": write.copy,
    "MOVE": write.move, "PROPPATCH": write.proppatch, "LOCK": locking.lock,
    "UNLOCK": locking.unlock,
}

# What the kernel says, as a WebDAV client should hear it: permission problems are 403, never 500.
ERRNO_ERRORS: dict[int, type[web.HTTPException]] = {
    errno.EACCES: web.HTTPForbidden, errno.EPERM: web.HTTPForbidden,
    errno.EROFS: web.HTTPForbidden, errno.ELOOP: web.HTTPForbidden,
    errno.ENOENT: web.HTTPNotFound, errno.ENOTDIR: web.HTTPConflict,
    errno.EISDIR: web.HTTPConflict, errno.ENOTEMPTY: web.HTTPConflict,
    errno.EEXIST: web.HTTPConflict, errno.ENAMETOOLONG: web.HTTPRequestURITooLong,
    errno.ENOSPC: web.HTTPInsufficientStorage, errno.EDQUOT: web.HTTPInsufficientStorage,
    errno.EFBIG: web.HTTPInsufficientStorage,
}


def build_app(settings: FileserverSettings, registry: CollectorRegistry,
              shared_locks: Path | None = None) -> web.Application:
    """``shared_locks``: the lock table the server's processes share (several processes)."""
    locks = (SharedLockManager(shared_locks, settings.lock_timeout) if shared_locks
             else LockManager(settings.lock_timeout))
    mounts = MountTable(settings.mount_table)
    dav = Dav(settings, mounts, locks, BatchedThreads(), CachedReads(mounts.mounts, registry))
    requests = Counter("jupyterhub_sidecars_kubepie_fileserver_requests",
                       "WebDAV requests by method and status.", ["method", "code"],
                       registry=registry)
    app = make_app(registry)
    token = settings.access_token.get_secret_value() if settings.access_token else None
    expected = f"Bearer {token}".encode() if token else b""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler = HANDLERS.get(request.method)
        status = 500
        try:
            if token and not hmac.compare_digest(
                    request.headers.get("Authorization", "").encode(), expected):
                raise web.HTTPUnauthorized(text="this server answers only its gateway\n")
            if handler is None:
                raise web.HTTPMethodNotAllowed(request.method, sorted(HANDLERS))
            view = await share_view(dav, request)
            response = await handler(view or dav, request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except (BadPath, BadXml, BadIfHeader) as exc:
            status = 400
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        except OutsideMount as exc:
            status = 403
            raise web.HTTPForbidden(text=f"{exc}\n") from None
        except LockConflict as exc:
            status = 423
            raise HTTPLocked(text=f"{exc}\n") from None
        except ConnectionError:
            status = 499  # the client went away (nginx's code for it, in the metrics only)
            raise web.HTTPBadRequest(text="connection lost\n") from None
        except OSError as exc:
            error = ERRNO_ERRORS.get(exc.errno or 0, web.HTTPInternalServerError)
            status = error.status_code
            if status == 500:
                log.exception("filesystem error", extra={"method": request.method})
            raise error(text=f"{exc.strerror or exc}\n") from None
        finally:
            requests.labels(request.method if handler else "other", str(status)).inc()

    async def io_threads(_: web.Application) -> AsyncIterator[None]:
        """The filesystem worker threads (and the lock table) live exactly as long as the app."""
        dav.io.start()
        yield
        dav.io.stop()
        dav.cached.close()
        locks.close()

    app.cleanup_ctx.append(io_threads)
    app.router.add_route("*", "/{path:.*}", dispatch)
    return app
