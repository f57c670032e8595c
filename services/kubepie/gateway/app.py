"""The gateway's aiohttp application: login and key pages under /_kubepie/, everything else
authenticated and forwarded to the caller's own file server."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from services.identity.claims import Identity
from services.kubepie.fileserver.shares import PREFIX_HEADER, READ_METHODS, SHARE_HEADER
from services.kubepie.gateway.authn import (
    Authenticator,
    NotAuthenticated,
    Refused,
    Unavailable,
    challenges,
)
from services.kubepie.gateway.keys_page import KeysPage
from services.kubepie.gateway.links import PREFIX as LINKS
from services.kubepie.gateway.links import ShareLinks
from services.kubepie.gateway.links_page import LinksPage
from services.kubepie.gateway.login import PREFIX, BrowserLogin
from services.kubepie.gateway.pages import error_page
from services.kubepie.gateway.proxy import (
    BadDestination,
    forward,
    public_authority,
    request_headers,
    upstream_url,
)
from services.kubepie.gateway.servers import StartFailed, UserServers
from services.kubepie.gateway.sessions import Sessions
from services.kubepie.gateway.splice import totals as splice_totals
from services.runtime.webapp import make_app

log = logging.getLogger(__name__)
access_log = logging.getLogger(f"{__name__}.access")  # one line per request


@dataclass
class Gateway:
    authenticator: Authenticator
    servers: UserServers
    login: BrowserLogin
    keys_page: KeysPage
    links: ShareLinks
    sessions: Sessions
    public_url: str
    trust_forwarded: bool
    authorize_reuse: float = 0.0  # seconds a proxy in front may reuse an authorize answer


class Metrics:
    def __init__(self, registry: CollectorRegistry, servers: UserServers) -> None:
        self.requests = Counter("jupyterhub_sidecars_kubepie_gateway_requests",
                                "Requests by method, status and how the caller was identified.",
                                ["method", "code", "via"], registry=registry)
        self.sent = Counter("jupyterhub_sidecars_kubepie_gateway_sent_bytes",
                            "Response body bytes sent to clients.", registry=registry)
        self.duration = Histogram("jupyterhub_sidecars_kubepie_gateway_request_duration_seconds",
                                  "Time to the end of the response.", registry=registry,
                                  buckets=(0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600))
        running = Gauge("jupyterhub_sidecars_kubepie_gateway_file_servers",
                        "File servers this gateway routes to.", registry=registry)
        running.set_function(lambda: len(servers.running))
        registry.register(_StartCounts(servers))


class _StartCounts(Collector):
    """Starts and failed starts of file servers (deploy/metrics/alerts.yaml alerts on the
    failures), read from the server table when scraped."""

    def __init__(self, servers: UserServers) -> None:
        self.servers = servers

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("jupyterhub_sidecars_kubepie_gateway_file_server_starts",
                                  "File servers started.", value=self.servers.starts)
        yield CounterMetricFamily(
            "jupyterhub_sidecars_kubepie_gateway_file_server_start_failures",
            "File server starts that failed or timed out.", value=self.servers.start_failures)
        yield CounterMetricFamily(
            "jupyterhub_sidecars_kubepie_gateway_spliced_bytes",
            "Response body bytes moved socket to socket in the kernel (splice), of those sent.",
            value=splice_totals.moved)


def _reuse_seconds(limit: float, until: float | None) -> int:
    """Whole seconds an authorize answer may be reused: at most ``limit``, and never past the
    credential's end (``until``); 0 means not at all."""
    if until is not None:
        limit = min(limit, until - time.time())
    return max(0, int(limit))


def build_app(gateway: Gateway, registry: CollectorRegistry,
              session: aiohttp.ClientSession) -> web.Application:
    metrics = Metrics(registry, gateway.servers)
    reuse = gateway.authorize_reuse
    app = make_app(registry)
    app.add_routes(gateway.login.routes())
    app.add_routes(gateway.keys_page.routes())

    async def probe(identity: Identity, path: str) -> bool | None:
        """Whether ``path`` is a folder on the identity's server (None: not readable)."""
        endpoint = await gateway.servers.endpoint(identity)
        endpoint.active += 1
        try:
            async with session.request("PROPFIND", upstream_url(endpoint.url, path), headers={
                    "Authorization": f"Bearer {endpoint.token}", "Depth": "0"}) as answer:
                text = await answer.text()
        finally:
            gateway.servers.release(endpoint)
        if answer.status != 207:
            return None
        return "<D:collection/>" in text or ":collection/>" in text

    links_page = LinksPage(gateway.links, gateway.sessions, gateway.authenticator,
                           probe, gateway.public_url)
    app.add_routes(links_page.routes())

    async def share(request: web.Request) -> web.StreamResponse:
        """A share link: the owner's server, read-only, within the shared path."""
        started = time.monotonic()
        user, status, sent = "-", 500, 0
        token = request.match_info["token"]
        try:
            link = await gateway.links.resolve(token)
            if link is None:
                status = 404
                return error_page(404, "This link does not exist, has expired, or was "
                                       "revoked.")
            user = link.owner.username
            if request.method not in READ_METHODS:
                status = 403
                return error_page(403, "A share link is read-only.")
            prefix = link.prefix(token)
            target = request.raw_path.split("?", 1)[0]
            if not target.startswith(prefix) and (target + "/").startswith(prefix):
                status = 301  # the folder's own URL ends in "/"
                raise web.HTTPMovedPermanently(prefix)
            if not link.collection and target in (f"{LINKS}{token}", f"{LINKS}{token}/"):
                status = 302  # a file is published under its own name
                raise web.HTTPFound(prefix)
            await gateway.links.store.count_use(link)
            response, sent = await _proxy(gateway, request, session, link.owner, extra={
                SHARE_HEADER: link.path, PREFIX_HEADER: prefix})
            status = response.status
            return response
        except (Unavailable, StartFailed) as exc:
            status = 503
            return error_page(503, f"Unavailable: {exc}")
        finally:
            duration = time.monotonic() - started
            metrics.requests.labels(request.method, str(status), "link").inc()
            metrics.sent.inc(sent)
            access_log.info("request", extra={
                "user": user, "method": request.method, "path": request.path[:64],
                "status": status, "bytes": sent, "duration": round(duration, 4),
                "via": "link"})

    app.router.add_route("*", f"{LINKS}{{token}}", share)
    app.router.add_route("*", f"{LINKS}{{token}}/{{rest:.*}}", share)

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        user, via, status, sent = "-", "-", 500, 0
        try:
            identity, via = await gateway.authenticator.identify(request)
            user = identity.username
            response, sent = await _proxy(gateway, request, session, identity)
            status = response.status
            return response
        except NotAuthenticated as exc:
            status = 401
            return _unauthenticated(request, exc)
        except Refused as exc:
            status = 403
            return error_page(403, f"Forbidden: {exc}")
        except (Unavailable, StartFailed) as exc:
            status = 503
            return error_page(503, f"Unavailable: {exc}")
        except BadDestination as exc:
            status = exc.status
            return error_page(exc.status, str(exc))
        except web.HTTPException as exc:
            status = exc.status
            raise
        except (ConnectionResetError, aiohttp.ClientPayloadError):
            status = 499  # a side went away mid-body; logged, nothing to answer
            raise
        finally:
            duration = time.monotonic() - started
            metrics.requests.labels(request.method, str(status), via).inc()
            metrics.sent.inc(sent)
            metrics.duration.observe(duration)
            access_log.info("request", extra={
                "user": user, "method": request.method, "path": request.path,
                "status": status, "bytes": sent, "duration": round(duration, 4), "via": via})

    async def authorize(request: web.Request) -> web.StreamResponse:
        """``auth_request``/ForwardAuth: who is asking and where their server is, for a
        proxy in front (nginx) that then moves the bytes itself."""
        started = time.monotonic()
        user, via, status = "-", "-", 500
        try:
            caller = await gateway.authenticator.caller(request)
            user, via = caller.identity.username, caller.via
            endpoint = await gateway.servers.endpoint(caller.identity)
            endpoint.active += 1
            gateway.servers.release(endpoint)  # counts as use; the transfer is the proxy's
            status = 200
            return web.Response(status=200, headers={
                "X-Kubepie-Upstream": endpoint.url, "X-Kubepie-User": user,
                "X-Kubepie-Authorization": f"Bearer {endpoint.token}",
                # nginx may reuse this answer for the same credential (kubepie.conf's auth
                # cache), never past the credential's end; other caches must not keep it.
                "X-Accel-Expires": str(_reuse_seconds(reuse, caller.until)),
                "Cache-Control": "no-store"})
        except NotAuthenticated as exc:
            status = 401
            response = web.Response(status=401, text=f"Unauthorized: {exc}\n")
            for value in challenges(exc.error, str(exc)):
                response.headers.add("WWW-Authenticate", value)
            return response
        except Refused as exc:
            status = 403
            return web.Response(status=403, text=f"Forbidden: {exc}\n")
        except (Unavailable, StartFailed) as exc:
            status = 503
            return web.Response(status=503, text=f"Unavailable: {exc}\n")
        finally:
            metrics.requests.labels("AUTH", str(status), via).inc()
            access_log.info("authorize", extra={
                "user": user, "method": request.headers.get("X-Original-Method", "-"),
                "path": request.headers.get("X-Original-URI", "-"), "status": status,
                "duration": round(time.monotonic() - started, 4), "via": via})

    app.router.add_get(f"{PREFIX}/authorize", authorize)
    app.router.add_route("*", "/{path:.*}", handle)
    return app


async def _proxy(gateway: Gateway, request: web.Request, session: aiohttp.ClientSession,
                 identity: Identity, extra: dict[str, str] | None = None
                 ) -> tuple[web.StreamResponse, int]:
    host = public_authority(request, gateway.trust_forwarded)
    scheme = (request.headers.get("X-Forwarded-Proto", request.scheme)
              if gateway.trust_forwarded else request.scheme)
    own_hosts = {host, request.host, gateway.public_url.split("://", 1)[1].split("/")[0]}
    for attempt in (1, 2):
        endpoint = await gateway.servers.endpoint(identity)
        headers = request_headers(request, endpoint, public_host=host, public_scheme=scheme,
                                  own_hosts=own_hosts)
        headers.update(extra or {})
        endpoint.active += 1
        try:
            return await forward(request, session, endpoint, headers)
        except aiohttp.ClientConnectorError:
            # Nothing was sent: the server is gone (crashed, pod deleted). Start a new one
            # and try once more; a body already read cannot be replayed.
            gateway.servers.forget(endpoint)
            if attempt == 2 or request.body_exists:
                raise StartFailed("the file server is not reachable; try again") from None
        finally:
            gateway.servers.release(endpoint)
    raise AssertionError("unreachable")


def _unauthenticated(request: web.Request, exc: NotAuthenticated) -> web.StreamResponse:
    browser = request.method == "GET" and "text/html" in request.headers.get("Accept", "") \
        and "Authorization" not in request.headers
    if browser:
        return web.HTTPFound(f"{PREFIX}/login?next={quote(request.path_qs, safe='/')}")
    response = error_page(401, f"Unauthorized: {exc}")
    for value in challenges(exc.error, str(exc)):
        response.headers.add("WWW-Authenticate", value)
    return response
