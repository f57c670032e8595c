"""The auth_request mode: real nginx moves the bytes, the gateway only decides who and where
(deploy/kubepie/nginx/kubepie.conf, as shipped)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway import Gateway, access_token, make_homes, remove, temp_root
from tests.nginx_front import NginxFront
from tests.oidc import OidcProvider

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
    log = [r for r in gateway.access_log() if r.get("message") == "authorize"]
    assert any(r["path"] == "/home/up.bin" and r["method"] == "PUT" and r["user"] == "alice"
               for r in log), log[-3:]


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
