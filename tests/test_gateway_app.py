"""The gateway's aiohttp app in process (pytest-aiohttp): who may pass, what a refusal looks
like, and a request proxied to a file server app that also runs in process — in a second
instead of the seconds a real gateway, provider and forked file server take. The real-process
tests (test_gateway_*.py) keep what only processes show: uids, privilege drops, signals."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient, AiohttpServer

from harness.issuer import Issuer
from services.identity.claims import ClaimMapping, Identity
from services.kubepie.fileserver.app import build_app as fileserver_app
from services.kubepie.fileserver.settings import FileserverSettings
from services.kubepie.gateway.accesskeys import AccessKeys, SqliteKeyStore
from services.kubepie.gateway.app import Gateway, build_app
from services.kubepie.gateway.authn import Authenticator
from services.kubepie.gateway.bearer import JwtVerifier, OpaqueTokenChecker, ProviderMetadata
from services.kubepie.gateway.keys_page import KeysPage
from services.kubepie.gateway.links import ShareLinks, SqliteLinkStore
from services.kubepie.gateway.login import BrowserLogin
from services.kubepie.gateway.servers import Endpoint, StartFailed, UserServers
from services.kubepie.gateway.sessions import Sessions

TOKEN = "gateway-to-fileserver"
Parts = tuple[TestClient, "InProcessBackend", Issuer]  # the gateway app's client


@dataclass
class InProcessBackend:
    """Every identity's "server" is one file server app on loopback (or a failed start)."""

    url: str
    failing: bool = False
    started: list[str] = field(default_factory=list)
    name: str = "in-process"

    async def start(self, identity: Identity) -> Endpoint:
        if self.failing:
            raise StartFailed("no capacity")
        self.started.append(identity.username)
        return Endpoint(identity, self.url, TOKEN, f"in-process-{identity.username}")

    async def stop(self, endpoint: Endpoint) -> None:
        endpoint.dead.set()

    def note_use(self, endpoint: Endpoint) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture
async def parts(tmp_path: Path, issuer: Issuer, aiohttp_server: AiohttpServer,
                aiohttp_client: AiohttpClient
                ) -> AsyncIterator[Parts]:
    (tmp_path / "home").mkdir()
    files = await aiohttp_server(fileserver_app(
        FileserverSettings(mounts=f"home={tmp_path / 'home'}", access_token=TOKEN),
        CollectorRegistry()))
    backend = InProcessBackend(str(files.make_url("")).rstrip("/"))
    mapping = ClaimMapping()
    async with httpx.AsyncClient() as http, aiohttp.ClientSession(auto_decompress=False) as up:
        metadata = ProviderMetadata(issuer.url, http)
        jwts = JwtVerifier(metadata, http, audiences=("kubepie",), algorithms=("RS256",))
        opaque = OpaqueTokenChecker("reject", metadata, http, client_id="kubepie",
                                    client_secret="s", audiences=("kubepie",))
        sessions = Sessions("session-secret", secure=False, lifetime=3600)
        keys = AccessKeys(SqliteKeyStore(tmp_path / "keys.sqlite"), max_lifetime=None)
        servers = UserServers(backend, idle_timeout=60, start_timeout=10)
        public = "http://127.0.0.1"
        gateway = Gateway(
            authenticator=Authenticator(jwts=jwts, opaque=opaque, mapping=mapping, keys=keys,
                                        sessions=sessions),
            servers=servers,
            login=BrowserLogin(metadata=metadata, verifier=jwts, http=http, sessions=sessions,
                               mapping=mapping, client_id="kubepie", client_secret="s",
                               public_url=public, scopes="openid"),
            keys_page=KeysPage(keys, sessions, public),
            links=ShareLinks(SqliteLinkStore(tmp_path / "keys.sqlite"), max_lifetime=86400),
            sessions=sessions, public_url=public, trust_forwarded=False, authorize_reuse=5)
        client = await aiohttp_client(build_app(gateway, CollectorRegistry(), up))
        yield client, backend, issuer
        await servers.close()


def bearer(issuer: Issuer, **claims: object) -> dict[str, str]:
    token = issuer.token(**{"uidNumber": 1001, "gidNumber": 1001, **claims})
    return {"Authorization": f"Bearer {token}"}


async def test_a_signed_token_reaches_the_users_server_and_others_are_refused(
        parts: Parts) -> None:
    client, backend, issuer = parts
    alice = bearer(issuer)
    put = await client.put("/home/notes.txt", data=b"hello\n", headers=alice)
    assert put.status == 201, await put.text()
    got = await client.get("/home/notes.txt", headers=alice)
    assert got.status == 200 and await got.read() == b"hello\n"
    assert backend.started == ["alice"]  # started once, then reused

    anonymous = await client.get("/home/notes.txt")
    challenges = " ".join(anonymous.headers.getall("WWW-Authenticate"))
    assert anonymous.status == 401 and 'Basic realm="kubepie"' in challenges, challenges
    expired = bearer(issuer, exp=int(time.time()) - 600)
    for headers in (bearer(issuer, aud="someone-else"), expired,
                    {"Authorization": "Bearer not-a-jwt"},
                    {"Authorization": alice["Authorization"][:-4] + "AAAA"}):
        refused = await client.get("/home/notes.txt", headers=headers)
        assert refused.status == 401, (headers, refused.status)
    assert backend.started == ["alice"]  # no refused caller ever started a server


async def test_nginx_authorize_answers_and_a_failed_start_is_503(parts: Parts) -> None:
    client, backend, issuer = parts
    alice = bearer(issuer)
    allowed = await client.get("/_kubepie/authorize", headers=alice)
    assert allowed.status == 200, await allowed.text()
    assert 0 < int(allowed.headers["X-Accel-Expires"]) <= 5  # reuse, capped at the token's exp
    assert (await client.get("/_kubepie/authorize")).status == 401
    backend.failing = True
    bob = bearer(issuer, sub="bob", preferred_username="bob", uidNumber=1002, gidNumber=1002)
    unavailable = await client.get("/home/", headers=bob)
    assert unavailable.status == 503 and "no capacity" in await unavailable.text()
    assert (await client.get("/healthz")).status == 200


async def test_small_and_large_bodies_arrive_whole_with_their_headers(parts: Parts) -> None:
    """A body up to 64 KiB is read whole and sent in one piece, a larger one streamed: both
    byte for byte, with the file server's validators, ranges and HEAD's length."""
    client, _, issuer = parts
    alice = bearer(issuer)
    small, large = bytes(range(256)) * 16, bytes(range(256)) * 1024  # 4 KiB, 256 KiB
    for name, body in (("small.bin", small), ("large.bin", large)):
        assert (await client.put(f"/home/{name}", data=body, headers=alice)).status == 201
        got = await client.get(f"/home/{name}", headers=alice)
        assert got.status == 200 and await got.read() == body, name
        assert got.headers["Content-Length"] == str(len(body))
        assert got.headers["ETag"] and got.headers["Last-Modified"]
        ranged = await client.get(f"/home/{name}", headers={**alice, "Range": "bytes=10-19"})
        assert ranged.status == 206 and await ranged.read() == body[10:20]
        assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
        head = await client.head(f"/home/{name}", headers=alice)
        assert head.status == 200 and head.headers["Content-Length"] == str(len(body))
        assert await head.read() == b""
        unchanged = await client.get(f"/home/{name}", headers={
            **alice, "If-None-Match": got.headers["ETag"]})
        assert unchanged.status == 304 and await unchanged.read() == b""
