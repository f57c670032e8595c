"""Sidecar URLs, over TCP or a UNIX socket.

In a pod the sidecars listen on the pod's own loopback (``http://127.0.0.1:8765``). On one
machine (the embedded default) loopback is shared by every user, so there a sidecar listens on
a UNIX socket in its user's 0700 run folder, and its URL says so: ``http+unix://`` followed by
the socket's path, percent-encoded (the convention of requests-unixsocket and docker-py).
The same environment variables carry either form; these helpers open both.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

UNIX_SCHEME = "http+unix"


def unix_url(socket: str) -> str:
    return f"{UNIX_SCHEME}://{quote(socket, safe='')}"


def socket_of(url: str) -> str | None:
    """The UNIX socket an ``http+unix://`` URL names (None for plain http)."""
    parts = urlsplit(url)
    return unquote(parts.netloc) if parts.scheme == UNIX_SCHEME else None


def http_url(url: str, path: str) -> str:
    """``path`` on the sidecar, as an http URL (a UNIX socket's host part is a placeholder)."""
    base = "http://localhost" if socket_of(url) is not None else url.rstrip("/")
    return base + path


def client(url: str, **kwargs: Any) -> httpx.Client:
    socket = socket_of(url)
    transport = httpx.HTTPTransport(uds=socket) if socket is not None else None
    return httpx.Client(transport=transport, **kwargs)


def async_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    socket = socket_of(url)
    transport = httpx.AsyncHTTPTransport(uds=socket) if socket is not None else None
    return httpx.AsyncClient(transport=transport, **kwargs)
