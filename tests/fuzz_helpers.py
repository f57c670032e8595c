"""Objects the fuzz tests need, built once: a file server's request context, a verifier."""

from __future__ import annotations

import functools
import tempfile
from typing import Any

import httpx
from joserfc.jwk import RSAKey
from prometheus_client import CollectorRegistry

from services.kubepie.fileserver.cached_read import CachedReads
from services.kubepie.fileserver.context import Dav
from services.kubepie.fileserver.io_threads import BatchedThreads
from services.kubepie.fileserver.locks import LockManager
from services.kubepie.fileserver.mounts import MountTable
from services.kubepie.fileserver.settings import FileserverSettings
from services.kubepie.gateway.bearer import JwtVerifier, ProviderMetadata


@functools.cache
def file_server_context() -> Dav:
    folder = tempfile.mkdtemp(prefix="kubepie-fuzz-")
    settings = FileserverSettings(mounts=f"home={folder}")
    mounts = MountTable(settings.mount_table)
    return Dav(settings, mounts, LockManager(60.0), BatchedThreads(),
               CachedReads(mounts.mounts, CollectorRegistry()))


class _NoKeys(ProviderMetadata):
    """Discovery without a network: the JWKS comes from the mock transport."""

    async def get(self) -> dict[str, Any]:
        return {"jwks_uri": "http://127.0.0.1:9/jwks"}


@functools.cache
def _jwks() -> dict[str, Any]:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
    return {"keys": [key.as_dict(private=False)]}


def verifier_with_one_key() -> JwtVerifier:
    """A verifier whose provider publishes one RSA key (kid k1) the fuzzer cannot sign with."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda _: httpx.Response(200, json=_jwks())))
    return JwtVerifier(_NoKeys("http://127.0.0.1:9", http), http, audiences=("kubepie",),
                       algorithms=("RS256", "ES256"))
