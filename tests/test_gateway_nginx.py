"""The auth_request mode: real nginx moves the bytes, the gateway only decides who and where
(deploy/kubepie/nginx/kubepie.conf, as shipped)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from harness.gateway import Gateway, access_token, make_homes, remove, temp_root
from harness.nginx_front import NginxFront
from harness.oidc import OidcProvider
from services.identity.claims import Identity
from services.kubepie.gateway.accesskeys import AccessKeys, SqliteKeyStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def front() -> Iterator[tuple[NginxFront, Gateway]]:
    root = make_homes(temp_root())
    provider = OidcProvider(root / "provider.log", token_max_age=300)
    provider.start()
    gateway = Gateway(provider, root, {"KUBEPIE_OPAQUE_TOKENS": "userinfo"})
    nginx = NginxFront(root, gateway.port)
    try:
        gateway.start()
        nginx.start()
        yield nginx, gateway
    finally:
        nginx.stop()
        gateway.stop()
        provider.stop()
        remove(root)


def bearer(gateway: Gateway, user: str) -> dict[str, str]:
    assert isinstance(gateway.provider, OidcProvider)
    return {"Authorization": f"Bearer {access_token(gateway.provider, user)}"}


def test_requests_reach_the_users_server_through_nginx(
        front: tuple[NginxFront, Gateway]) -> None:
    nginx, gateway = front
    alice = bearer(gateway, "alice")
    assert httpx.get(f"{nginx.url}/home/secret.txt", headers=alice).text == "alice's secret\n"
    body = os.urandom(3 * 1024 * 1024)
    assert httpx.put(f"{nginx.url}/home/up.bin", headers=alice, content=body).status_code == 201
    copied = httpx.request("COPY", f"{nginx.url}/home/up.bin", headers={
        **alice, "Destination": f"{nginx.url}/home/copy.bin"})
    assert copied.status_code == 201  # Destination names nginx's host: X-Forwarded-Host
    assert (gateway.root / "home/alice/copy.bin").read_bytes() == body
    ranged = httpx.get(f"{nginx.url}/home/copy.bin", headers={**alice, "Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == body[:10]
    # One credential, one question: nginx reused the gateway's answer for the PUT, the COPY
    # and the ranged GET (within KUBEPIE_AUTHORIZE_REUSE, 5 s).
    log = [r for r in gateway.access_log() if r.get("message") == "authorize"]
    assert [(r["path"], r["user"], r["status"]) for r in log] == [
        ("/home/secret.txt", "alice", 200)], log


def test_nginx_answers_401_and_403_from_the_gateway(front: tuple[NginxFront, Gateway]) -> None:
    nginx, gateway = front
    anonymous = httpx.request("PROPFIND", f"{nginx.url}/home/")
    assert anonymous.status_code == 401
    assert any(v.startswith("Basic realm=")
               for v in anonymous.headers.get_list("WWW-Authenticate"))
    forged = httpx.get(f"{nginx.url}/home/secret.txt",
                       headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."})
    assert forged.status_code == 401
    if os.geteuid() == 0:
        bob = bearer(gateway, "bob")
        assert httpx.get(f"{nginx.url}/data/alice-private.txt", headers=bob).status_code == 403
        assert httpx.get(f"{nginx.url}/home/secret.txt", headers=bob).text == "bob's secret\n"


def test_the_login_pages_pass_through(front: tuple[NginxFront, Gateway]) -> None:
    nginx, _ = front
    login = httpx.get(f"{nginx.url}/_kubepie/login?next=/home/")
    assert login.status_code == 302 and "/oauth2/authorize" in login.headers["Location"]


def authorize_count(gateway: Gateway) -> int:
    return sum(1 for r in gateway.access_log() if r.get("message") == "authorize")


def new_key(gateway: Gateway, lifetime: float | None = None) -> tuple[str, str]:
    store = SqliteKeyStore(gateway.root / "keys.sqlite")
    try:
        key, secret = asyncio.run(AccessKeys(store, max_lifetime=None).create(
            Identity("alice", 1001, 1001, (5000,), ("xray",)), "nginx test", lifetime))
    finally:
        store.close()
    return key.key_id, secret


def until_refused(url: str, auth: tuple[str, str], timeout: float = 15) -> float:
    """Seconds until ``auth`` gets 401 at ``url`` (asked every 50 ms)."""
    started = time.monotonic()
    while httpx.get(url, auth=auth).status_code != 401:
        assert time.monotonic() - started < timeout, "never refused"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_revoked_access_key_stops_within_the_reuse_time(
        front: tuple[NginxFront, Gateway]) -> None:
    nginx, gateway = front
    auth = new_key(gateway)
    url = f"{nginx.url}/home/secret.txt"
    before = authorize_count(gateway)
    for _ in range(20):
        assert httpx.get(url, auth=auth).text == "alice's secret\n"
    assert authorize_count(gateway) - before == 1  # 20 requests, one decision

    store = SqliteKeyStore(gateway.root / "keys.sqlite")
    try:
        assert asyncio.run(AccessKeys(store, max_lifetime=None).revoke(auth[0], "alice"))
    finally:
        store.close()
    refused_after = until_refused(url, auth)
    assert refused_after <= 5 + 0.5, refused_after  # KUBEPIE_AUTHORIZE_REUSE: 5 s
    # Refusals are not reused: each one asks the gateway again.
    before = authorize_count(gateway)
    for _ in range(3):
        assert httpx.get(url, auth=auth).status_code == 401
    assert authorize_count(gateway) - before == 3


def test_an_answer_is_never_reused_past_the_credentials_expiry(
        front: tuple[NginxFront, Gateway]) -> None:
    nginx, gateway = front
    auth = new_key(gateway, lifetime=2.5)
    expires = time.monotonic() + 2.5
    url = f"{nginx.url}/home/secret.txt"
    assert httpx.get(url, auth=auth).status_code == 200
    until_refused(url, auth)
    assert time.monotonic() - expires <= 0.5


def test_a_credential_is_never_served_with_anothers_answer(
        front: tuple[NginxFront, Gateway]) -> None:
    nginx, gateway = front
    auth = new_key(gateway)
    url = f"{nginx.url}/home/secret.txt"
    assert httpx.get(url, auth=auth).status_code == 200
    # The same key id with a wrong secret, and the right secret with a changed key id.
    assert httpx.get(url, auth=(auth[0], auth[1] + "x")).status_code == 401
    assert httpx.get(url, auth=(auth[0][:-1] + "x", auth[1])).status_code == 401
    # The session cookie is part of the credential: a forged one beside nothing is refused.
    assert httpx.get(url, headers={"Cookie": "kubepie-session=forged"}).status_code == 401
