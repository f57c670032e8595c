"""Forwarding one request to a user's file server, streaming both bodies.

What the file server must never see: the client's credentials (Authorization, cookies) — it
gets the gateway's own per-server token instead. What it must see: the public host
(X-Forwarded-Host) for its links, and a Destination it can resolve: a Destination that names
this gateway is rewritten to a path; one naming another server is refused with 502 as RFC 4918
says, before anything is forwarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from services.kubepie.gateway.servers import Endpoint
from services.kubepie.gateway.splice import SPLICE_AVAILABLE, BodyCutShort, plain_socket, splice

CHUNK = 256 * 1024
SPLICE_FROM = 1 << 20  # bodies from 1 MiB go socket to socket in the kernel
WHOLE_BELOW = 64 * 1024  # bodies up to this size are read whole and sent in one piece
SPLICE_TIMEOUT = 600.0  # the longest wait for either side, as the upstream session's read
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length"))
NEVER_FORWARDED = frozenset(h.lower() for h in (
    "Authorization", "Cookie", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For",
    "Forwarded", "X-Kubepie-Share", "X-Kubepie-Share-Prefix"))  # the last two: the gateway's
DEFAULT_PORTS = {"http": "80", "https": "443"}


class BadDestination(Exception):
    """Destination names another server (502) or is not a URL (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def public_authority(request: web.Request, trust_forwarded: bool) -> str:
    if trust_forwarded and "X-Forwarded-Host" in request.headers:
        return request.headers["X-Forwarded-Host"].split(",")[0].strip()
    return request.host


def rewrite_destination(value: str, own_hosts: Iterable[str]) -> str:
    try:
        url = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise BadDestination(400, "Destination is not a URL") from None
    if not url.path.startswith("/"):
        raise BadDestination(400, "Destination is not an absolute URL or path")
    if url.netloc:
        wanted = _normal(url.netloc, DEFAULT_PORTS.get(url.scheme.lower()))
        if all(_normal(h, DEFAULT_PORTS.get(url.scheme.lower())) != wanted for h in own_hosts):
            raise BadDestination(502, "Destination is on another server")
    return url.path + (f"?{url.query}" if url.query else "")


def _normal(authority: str, default_port: str | None) -> str:
    authority = authority.lower().rsplit("@", 1)[-1]
    if default_port and authority.endswith(f":{default_port}"):
        authority = authority[: -len(default_port) - 1]
    return authority


def request_headers(request: web.Request, endpoint: Endpoint, *, public_host: str,
                    public_scheme: str, own_hosts: Iterable[str]) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in NEVER_FORWARDED:
            continue
        if lower == "destination":
            value = rewrite_destination(value, own_hosts)
        headers.add(name, value)
    headers["Authorization"] = f"Bearer {endpoint.token}"
    headers["X-Forwarded-Host"] = public_host
    headers["X-Forwarded-Proto"] = public_scheme
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    return headers


def response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in HOP_BY_HOP or name.lower() == "content-length":
            headers.add(name, value)
    return headers


def upstream_url(base: str, raw_target: str) -> URL:
    """The file server's URL for the request target *exactly as the client sent it*.

    Parsing the target here (yarl decodes ``%2e``, drops a ``#…`` part, removes dot
    segments) would make the gateway and the file server judge different paths — the start of
    every path-confusion bug; the file server alone decides what a raw path means.
    """
    server = URL(base)
    path, _, query = raw_target.partition("?")
    return URL.build(scheme=server.scheme, authority=server.raw_authority, path=path,
                     query_string=query, encoded=True)


async def forward(request: web.Request, session: aiohttp.ClientSession, endpoint: Endpoint,
                  headers: CIMultiDict[str]) -> tuple[web.StreamResponse, int]:
    """Send the request on; the response and the number of body bytes sent to the client."""
    body = request.content.iter_chunked(CHUNK) if request.body_exists else None
    if body is not None and request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    async with session.request(request.method, upstream_url(endpoint.url, request.raw_path),
                               headers=headers, data=body, allow_redirects=False,
                               auto_decompress=False, compress=None) as upstream:
        length = upstream.content_length
        if request.method != "HEAD" and length is not None and length <= WHOLE_BELOW \
                and upstream.status not in (204, 304):
            # A small body in one piece: headers and body leave in one write, with fewer
            # steps per request than streaming (4 KiB GETs are most of the requests).
            whole = await upstream.read()
            headers = response_headers(upstream.headers)
            headers.popall("Content-Length", None)  # aiohttp sets it from the body
            return web.Response(status=upstream.status, reason=upstream.reason,
                                headers=headers, body=whole), len(whole)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=response_headers(upstream.headers))
        if request.method == "HEAD" or upstream.status in (204, 304):
            await response.prepare(request)
            await response.write_eof()
            return response, 0
        await response.prepare(request)
        sent = await _spliced(request, response, upstream)
        if sent is None:
            sent = 0
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
                sent += len(chunk)
        await response.write_eof()
        return response, sent


async def _spliced(request: web.Request, response: web.StreamResponse,
                   upstream: aiohttp.ClientResponse) -> int | None:
    """Send a large body with splice(2) where that is exact (see splice.py): the bytes
    sent, or None to copy it through Python instead."""
    length = upstream.content_length
    connection = upstream.connection
    if not SPLICE_AVAILABLE or length is None or length < SPLICE_FROM or connection is None:
        return None
    source = plain_socket(connection.transport)
    target = plain_socket(request.transport)
    if source is None or target is None or request.transport is None:
        return None
    head = upstream.content.read_nowait(-1)  # what aiohttp already read past the headers
    assert connection.transport is not None
    connection.transport.pause_reading()  # from here on, the socket is ours to read
    if head:
        await response.write(head)
    while request.transport.get_write_buffer_size():  # the loop's bytes go first
        if request.transport.is_closing():
            raise ConnectionResetError("the client went away")
        await asyncio.sleep(0.001)
    try:
        moved = await splice(source, target, length - len(head), stall_limit=SPLICE_TIMEOUT)
    except (BodyCutShort, TimeoutError) as exc:
        raise aiohttp.ClientPayloadError(str(exc) or "the file server stalled") from None
    finally:
        # aiohttp's parser never saw the body: this connection cannot be reused.
        upstream.close()
    return len(head) + moved
