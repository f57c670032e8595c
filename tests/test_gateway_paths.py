"""The gateway forwards the request target exactly as the client sent it.

If the gateway parsed the path (decoding ``%2e``, dropping a ``#…`` part, removing dot
segments) before forwarding, it and the file server would judge two different paths — the
start of every path-confusion bug. So each traversal and encoding case of the file server's
own security tests must get the same answer through the gateway as directly, and litmus must
pass through the gateway with no warning.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fileserver import TRAVERSALS, Fileserver, running_as_root
from harness.gateway import Gateway, make_homes, remove, temp_root
from harness.litmus import run_litmus
from harness.oidc import OidcProvider
from services.identity.claims import Identity
from services.kubepie.gateway.accesskeys import AccessKeys, SqliteKeyStore

pytestmark = pytest.mark.slow

# More encodings than the traversals: each must mean the same thing on both sides.
ENCODINGS = [
    "/home/secret.txt", "/home/secret.txt?x=1", "/home/secret.txt#frag", "/home/%73ecret.txt",
    "/home//secret.txt", "/home/sub%2fsecret.txt", "/home/%2fsecret.txt", "/home/a;b",
    "/home/%25", "/home/%252e%252e/secret.txt", "/home/%23frag", "/home/caf%C3%A9",
    "/home/%E2%80%AE", "/home/sp%20ace", "/home/%", "/home/%zz", "/home/.", "/home/..",
    "/home/./secret.txt", "/data/../home/secret.txt", "/home/secret.txt/", "/%68ome/",
    "/home/%2E", "/home/.%2e/", "/home/%2e./", "/./home/", "/home/\\..\\secret.txt",
]


@pytest.fixture(scope="module")
def sides() -> Iterator[tuple[Gateway, Fileserver, str]]:
    """The gateway (local backend) and, beside it, a file server of alice's own on the same
    folders and ids; and alice's access key for the gateway (``Basic`` value)."""
    root = make_homes(temp_root())
    provider = OidcProvider(root / "provider.log")
    provider.start()
    gateway = Gateway(provider, root)
    ids = {"FILESERVER_UID": "1001", "FILESERVER_GID": "1001"} if running_as_root() else {}
    direct = Fileserver({"home": root / "home" / "alice", "data": root / "data"},
                        extra_env=ids, give_folders=False, log_path=root / "direct.log")
    try:
        gateway.start()
        direct.start()
        store = SqliteKeyStore(root / "keys.sqlite")
        try:
            key, secret = asyncio.run(AccessKeys(store, max_lifetime=None).create(
                Identity("alice", 1001, 1001, (5000,), ("xray",)), "paths", None))
        finally:
            store.close()
        yield gateway, direct, f"{key.key_id}:{secret}"
    finally:
        direct.stop()
        gateway.stop()
        provider.stop()
        remove(root)


def answer(port: int, method: str, target: str, authorization: str | None = None,
           body: bytes | None = None) -> int:
    """The status for ``target`` sent byte for byte (http.client does not normalise)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        if authorization:
            connection.putheader("Authorization", authorization)
        if method == "PROPFIND":
            connection.putheader("Depth", "0")
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversals_get_the_same_answer_through_the_gateway(
        sides: tuple[Gateway, Fileserver, str], target: str) -> None:
    gateway, direct, key = sides
    basic = "Basic " + base64.b64encode(key.encode()).decode()
    for method, body in (("GET", None), ("PROPFIND", None), ("DELETE", None),
                         ("PUT", b"overwrite")):
        through = answer(gateway.port, method, target, basic, body)
        alone = answer(direct.port, method, target, None, body)
        assert (through, alone) == (400, 400), (method, target)
    assert (gateway.root / "home" / "alice" / "secret.txt").read_text() == "alice's secret\n"


@pytest.mark.parametrize("target", ENCODINGS)
def test_encodings_mean_the_same_through_the_gateway(
        sides: tuple[Gateway, Fileserver, str], target: str) -> None:
    gateway, direct, key = sides
    basic = "Basic " + base64.b64encode(key.encode()).decode()
    for method in ("GET", "PROPFIND"):
        through = answer(gateway.port, method, target, basic)
        alone = answer(direct.port, method, target)
        assert through == alone, (method, target, through, alone)


def test_litmus_through_the_gateway_with_an_access_key(
        sides: tuple[Gateway, Fileserver, str], tmp_path: Path) -> None:
    """Every suite, every test passed, and not one warning (a ``#`` in a DELETE's target
    once reached the file server without it: "DELETE removed collection resource …")."""
    gateway, _, key = sides
    key_id, secret = key.split(":", 1)
    run_litmus(f"{gateway.url}/home/", tmp_path, key_id, secret).assert_all_passed()
