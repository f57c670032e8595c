"""The gateway with real OIDC providers and real file server processes.

Bearer JWTs come from glewlwyd (RS256, RFC 9068 access tokens whose ``aud`` is the gateway's
URL, asked for with an RFC 8707 resource indicator); opaque access tokens from
oidc-provider-mock, checked at its userinfo endpoint. As root (CI) each user's file server runs
with that user's uid, so "bob never reaches alice's files" is decided by the kernel, not by the
test's good will.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import RSAKey

from harness.gateway import (
    CLIENT_ID,
    Gateway,
    access_token,
    b64,
    make_homes,
    remove,
    temp_root,
    tokens_for,
    unb64,
)
from harness.glewlwyd import Glewlwyd
from harness.oidc import USERS, OidcProvider
from harness.tools import VENV_BIN, in_ci

TOKEN_LIFETIME = 8  # seconds: short, so that expiry is tested without a long wait
Served = tuple[Gateway, Glewlwyd]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    root = make_homes(temp_root())
    gateway = Gateway(None, root, {"KUBEPIE_LEEWAY": "1s"})  # type: ignore[arg-type]
    # The gateway accepts its own URL (the default) and, to prove that the audience is not
    # what keeps id tokens out, the client ids too: their id tokens carry those.
    gateway.extra_env["KUBEPIE_AUDIENCES"] = f"{gateway.url},{CLIENT_ID},jupyterhub"
    provider = Glewlwyd(root / "glewlwyd", access_token_lifetime=TOKEN_LIFETIME,
                        signing="rsa", resources=(gateway.url,), clients=(CLIENT_ID,))
    gateway.provider = provider
    try:
        provider.start()
        gateway.start()
        yield gateway, provider
    finally:
        gateway.stop()
        provider.stop()
        remove(root)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tokens(served: Served, user: str, client_id: str = CLIENT_ID) -> dict[str, str]:
    """glewlwyd's token response; its access token is for the gateway (aud = its URL)."""
    gateway, provider = served
    return provider.tokens_for(user, client_id=client_id, resource=gateway.url)


def jwt_for(served: Served, user: str) -> str:
    return str(tokens(served, user)["access_token"])


def test_alice_reaches_her_files_with_a_jwt(served: Served) -> None:
    gateway, _ = served
    headers = bearer(jwt_for(served, "alice"))
    assert httpx.get(f"{gateway.url}/home/secret.txt", headers=headers).text == \
        "alice's secret\n"
    put = httpx.put(f"{gateway.url}/home/notes.txt", headers=headers, content=b"hello")
    assert put.status_code == 201
    listing = httpx.request("PROPFIND", f"{gateway.url}/home/", headers={**headers,
                                                                         "Depth": "1"})
    assert listing.status_code == 207 and "/home/notes.txt" in listing.text
    assert (gateway.root / "home/alice/notes.txt").read_bytes() == b"hello"
    if os.geteuid() == 0:
        assert (gateway.root / "home/alice/notes.txt").stat().st_uid == 1001


def test_glewlwyds_joined_groups_string_maps_to_every_group(served: Served) -> None:
    """glewlwyd sends groups as "xray,bio": alice's server gets both gids (5000 mapped)."""
    gateway, _ = served
    token = jwt_for(served, "alice")
    claims = json.loads(unb64(token.split(".")[1]))
    assert claims["groups"] == "xray,bio"  # the real provider's shape
    assert httpx.get(f"{gateway.url}/home/", headers=bearer(token)).status_code == 200
    if os.geteuid() == 0:
        status = _server_status(gateway, "alice")
        assert re.search(r"^Groups:\s+5000\s*$", status, re.M), status


def test_id_tokens_never_open_files(served: Served) -> None:
    """Signed by the provider, for an accepted audience, fresh: still not an access token."""
    gateway, _ = served
    for client_id in (CLIENT_ID, "jupyterhub"):
        answer = tokens(served, "alice", client_id)
        id_token = answer["id_token"]
        assert json.loads(unb64(id_token.split(".")[1]))["aud"] == client_id
        response = httpx.get(f"{gateway.url}/home/secret.txt", headers=bearer(id_token))
        assert response.status_code == 401, client_id
        assert "not an access token" in " ".join(response.headers.get_list("WWW-Authenticate"))
        assert "alice's secret" not in response.text
        # The access token of the same answer works: only the kind of token differed.
        assert httpx.get(f"{gateway.url}/home/secret.txt",
                         headers=bearer(answer["access_token"])).status_code == 200


def test_destinations_are_rewritten_or_refused(served: Served) -> None:
    gateway, _ = served
    headers = bearer(jwt_for(served, "alice"))
    httpx.put(f"{gateway.url}/home/dest.txt", headers=headers, content=b"d")
    copied = httpx.request("COPY", f"{gateway.url}/home/dest.txt", headers={
        **headers, "Destination": f"{gateway.url}/home/dest-copy.txt"})
    assert copied.status_code == 201
    assert (gateway.root / "home/alice/dest-copy.txt").read_bytes() == b"d"
    foreign = httpx.request("COPY", f"{gateway.url}/home/dest.txt", headers={
        **headers, "Destination": "http://elsewhere.example/home/x.txt"})
    assert foreign.status_code == 502
    assert not (gateway.root / "home/alice/x.txt").exists()


def test_bodies_stream_through_without_piling_up(served: Served) -> None:
    """200 MiB up (chunked) and down; the gateway's peak memory stays far below that."""
    gateway, _ = served
    block = os.urandom(1 << 20)
    digest = hashlib.sha256(block * 200).hexdigest()

    def chunks() -> Iterator[bytes]:
        for _ in range(200):
            yield block

    put = httpx.put(f"{gateway.url}/home/big.bin", headers=bearer(jwt_for(served, "alice")),
                    content=chunks(), timeout=120)
    assert put.status_code == 201
    received = hashlib.sha256()
    with httpx.stream("GET", f"{gateway.url}/home/big.bin", timeout=120,
                      headers=bearer(jwt_for(served, "alice"))) as response:
        assert response.headers["Content-Length"] == str(200 << 20)
        for chunk in response.iter_bytes():
            received.update(chunk)
    assert received.hexdigest() == digest
    assert gateway.process is not None
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    peak_kib = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    assert peak_kib < 160 * 1024, f"gateway peak RSS {peak_kib // 1024} MiB"


def test_rejected_tokens_get_401(served: Served) -> None:
    gateway, provider = served
    good = jwt_for(served, "alice")
    header, payload, signature = good.split(".")
    claims = json.loads(unb64(payload))
    jwks = httpx.get(f"{provider.issuer}/jwks").json()
    public_pem = RSAKey.import_key(jwks["keys"][0]).as_pem(private=False)
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
    hs_signature = hmac.new(public_pem, f"{hs_header}.{payload}".encode(),
                            hashlib.sha256).digest()
    forged = {
        # no resource indicator: glewlwyd's aud is then the scope list ("openid")
        "wrong audience": provider.tokens_for("alice", client_id=CLIENT_ID)["access_token"],
        "alg none": f"{b64(json.dumps({'alg': 'none'}).encode())}.{payload}.",
        "HS256 with the public key": f"{hs_header}.{payload}.{b64(hs_signature)}",
        "tampered": f"{header}.{b64(json.dumps({**claims, 'uidNumber': '1002'}).encode())}."
                    f"{signature}",
        "signature of another token": f"{header}.{payload}."
                                      f"{jwt_for(served, 'bob').split('.')[2]}",
        "not a token": "Zm9vYmFy",
    }
    for name, token in forged.items():
        response = httpx.get(f"{gateway.url}/home/secret.txt", headers=bearer(token))
        assert response.status_code == 401, name
        assert "alice" not in response.text, name
        assert any('error="invalid_token"' in v
                   for v in response.headers.get_list("WWW-Authenticate")), name


def test_tokens_of_another_issuer_get_401(served: Served, tmp_path: Path) -> None:
    gateway, _ = served
    other = Glewlwyd(tmp_path / "other", access_token_lifetime=60, signing="rsa",
                     resources=(gateway.url,), clients=(CLIENT_ID,))
    other.start()
    try:
        token = other.tokens_for("alice", client_id=CLIENT_ID, resource=gateway.url)
    finally:
        other.stop()
    response = httpx.get(f"{gateway.url}/home/secret.txt",
                         headers=bearer(token["access_token"]))
    assert response.status_code == 401


def test_expired_tokens_get_401(served: Served) -> None:
    gateway, _ = served
    token = jwt_for(served, "alice")
    assert httpx.get(f"{gateway.url}/home/", headers=bearer(token)).status_code == 200
    time.sleep(TOKEN_LIFETIME + 1 + 1.5)  # the token's lifetime, the gateway's leeway, margin
    response = httpx.get(f"{gateway.url}/home/", headers=bearer(token))
    assert response.status_code == 401 and "expired" in \
        "".join(response.headers.get_list("WWW-Authenticate"))


def test_bob_never_reaches_alices_files(served: tuple[Gateway, OidcProvider]) -> None:
    if os.geteuid() != 0:
        message = "the uid separation needs root (the file servers drop to the users' uids)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    gateway, _ = served
    alice, bob = bearer(jwt_for(served, "alice")), bearer(jwt_for(served, "bob"))
    assert httpx.get(f"{gateway.url}/data/alice-private.txt", headers=alice).status_code == 200
    for method in ("GET", "PUT", "DELETE"):
        response = httpx.request(method, f"{gateway.url}/data/alice-private.txt",
                                 headers=bob, content=b"x" if method == "PUT" else None)
        assert response.status_code in (403, 404), (method, response.status_code)
    assert (gateway.root / "data/alice-private.txt").read_text() == "only alice\n"
    # /home/ is each user's own home: bob's request never names alice's folder.
    assert httpx.get(f"{gateway.url}/home/secret.txt", headers=bob).text == "bob's secret\n"
    moved = httpx.request("COPY", f"{gateway.url}/data/alice-private.txt", headers={
        **bob, "Destination": f"{gateway.url}/home/stolen.txt"})
    assert moved.status_code in (403, 404) and not (gateway.root / "home/bob/stolen.txt").exists()
    status = _server_status(gateway, "bob")
    assert re.search(r"^Uid:\s+1002\s+1002\s+1002\s+1002$", status, re.M), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status


def _server_status(gateway: Gateway, user: str) -> str:
    started = [json.loads(line) for line in gateway.log().splitlines()
               if '"file server started"' in line and f'"user": "{user}"' in line]
    pid = started[-1]["server"].split()[-1]
    return Path(f"/proc/{pid}/status").read_text()


def test_unusable_identities_get_403_with_the_reason(
        served: tuple[Gateway, OidcProvider]) -> None:
    gateway, _ = served
    carol = httpx.get(f"{gateway.url}/home/", headers=bearer(jwt_for(served, "carol")))
    assert carol.status_code == 403 and "uidNumber" in carol.text
    mallory = httpx.get(f"{gateway.url}/home/", headers=bearer(jwt_for(served, "mallory")))
    assert mallory.status_code == 403 and "root" in mallory.text


def test_no_credentials(served: tuple[Gateway, OidcProvider]) -> None:
    gateway, _ = served
    response = httpx.request("PROPFIND", f"{gateway.url}/home/")
    assert response.status_code == 401
    challenges = response.headers.get_list("WWW-Authenticate")
    assert challenges[0].startswith("Basic realm=") and challenges[1].startswith("Bearer")
    browser = httpx.get(f"{gateway.url}/home/?x=1", headers={"Accept": "text/html"})
    assert browser.status_code == 302
    location = urllib.parse.urlsplit(browser.headers["Location"])
    assert location.path == "/_kubepie/login"
    assert urllib.parse.parse_qs(location.query) == {"next": ["/home/?x=1"]}
    for header in ("Negotiate abc", "Basic !!!", "Basic " + b64(b"nocolon")):
        assert httpx.get(f"{gateway.url}/home/",
                         headers={"Authorization": header}).status_code == 401


def test_client_credentials_never_reach_the_file_server(
        served: tuple[Gateway, OidcProvider]) -> None:
    """The file server answers only the gateway's own token: the client's is replaced."""
    gateway, _ = served
    token = jwt_for(served, "alice")
    httpx.get(f"{gateway.url}/home/", headers=bearer(token))
    started = [json.loads(line) for line in gateway.log().splitlines()
               if '"file server started"' in line and '"user": "alice"' in line]
    pid = int(started[-1]["server"].split()[-1])
    direct = httpx.get(f"{started[-1]['url']}/home/secret.txt", headers=bearer(token))
    assert direct.status_code == 401  # alice's own token does not open her server directly
    # Forked from the local backend's fork server, which started with a bare environment:
    # no gateway secret, and the server's own token only in its memory (read from a file
    # that is gone once the server is up).
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    assert set(env) <= {"PATH", "LANG"}, env
    assert not list(Path(tempfile.gettempdir()).glob("kubepie-tokens-*/token-*"))


def test_the_access_log_names_user_method_path_status_bytes(
        served: tuple[Gateway, OidcProvider]) -> None:
    gateway, _ = served
    httpx.get(f"{gateway.url}/home/secret.txt", headers=bearer(jwt_for(served, "alice")))
    time.sleep(0.2)
    record = next(r for r in reversed(gateway.access_log())
                  if r["path"] == "/home/secret.txt" and r["user"] == "alice")
    assert record["method"] == "GET" and record["status"] == 200
    assert record["bytes"] == len("alice's secret\n") and record["via"] == "bearer"
    assert 0 < record["duration"] < 5


def test_metrics_count_requests(served: tuple[Gateway, OidcProvider]) -> None:
    gateway, _ = served
    text = httpx.get(f"{gateway.url}/metrics").text
    assert re.search(r'kubepie_gateway_requests_total\{code="401",method="GET",via="-"\} '
                     r"[1-9]", text), text[:2000]


def test_opaque_tokens_crash_and_idle(tmp_path: Path) -> None:
    """Opaque access tokens are checked at userinfo, and oidc-provider-mock's (JWT) id tokens
    are refused; a killed file server is replaced on the next request; an idle one stops."""
    root = make_homes(temp_root())
    provider = OidcProvider(root / "provider.log", token_max_age=60, users=list(USERS))
    provider.start()
    gateway = Gateway(provider, root, {"KUBEPIE_IDLE_TIMEOUT": "3s",
                                       "KUBEPIE_OPAQUE_TOKENS": "userinfo",
                                       "KUBEPIE_AUDIENCES": CLIENT_ID})
    try:
        gateway.start()
        answer = tokens_for(provider, "alice")
        assert "." not in answer["access_token"]  # the provider's access tokens are opaque
        refused = httpx.get(f"{gateway.url}/home/", headers=bearer(answer["id_token"]))
        assert refused.status_code == 401  # aud kubepie is accepted here: the kind is not
        assert "not an access token" in " ".join(refused.headers.get_list("WWW-Authenticate"))
        bad = httpx.get(f"{gateway.url}/home/", headers=bearer(access_token(provider, "bob")
                                                               [:-2] + "xx"))
        assert bad.status_code == 401
        headers = bearer(answer["access_token"])
        assert httpx.get(f"{gateway.url}/home/secret.txt", headers=headers).status_code == 200
        first = _pids(gateway)
        os.kill(first[-1], signal.SIGKILL)
        time.sleep(0.3)
        assert httpx.get(f"{gateway.url}/home/secret.txt", headers=headers).status_code == 200
        second = _pids(gateway)
        assert len(second) == 2 and second[-1] != first[-1]
        deadline = time.monotonic() + 15
        while _alive(second[-1]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(second[-1]), "the idle file server was not stopped"
        assert "stopping idle file server" in gateway.log()
        assert httpx.get(f"{gateway.url}/home/secret.txt", headers=headers).status_code == 200
        assert gateway.stop() == 0
    finally:
        gateway.stop()
        provider.stop()
        remove(root)


def _pids(gateway: Gateway) -> list[int]:
    return [int(json.loads(line)["server"].split()[-1]) for line in gateway.log().splitlines()
            if '"file server started"' in line]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize(("env", "message"), [
    ({"KUBEPIE_OIDC_ISSUER": "ftp://x"}, "KUBEPIE_OIDC_ISSUER='ftp://x' must be an http(s) URL"),
    ({"KUBEPIE_PUBLIC_URL": "http://files.example.org"}, "plain http is only for loopback"),
    ({"KUBEPIE_SESSION_SECRET": "short"}, "at least 32 characters"),
    ({"KUBEPIE_ALGORITHMS": "RS256,HS256"}, "HS256 not accepted"),
    ({"KUBEPIE_ALGORITHMS": "none"}, "none not accepted"),
    ({"KUBEPIE_ID_RANGE": "0-100"}, "never 0"),
    ({"KUBEPIE_GROUP_GIDS": "xray"}, "expected group=gid"),
    ({"KUBEPIE_STORAGE_FILE": "/nonexistent/storage.yaml"}, "KUBEPIE_STORAGE_FILE"),
    ({"KUBEPIE_BACKEND": "kubernetes"}, "needs KUBEPIE_POD_IMAGE"),
    ({"KUBEPIE_CLIENT_SECRET": ""}, "KUBEPIE_CLIENT_SECRET or KUBEPIE_CLIENT_SECRET_FILE"),
])
def test_bad_settings_stop_with_one_line(env: dict[str, str], message: str) -> None:
    base = {"PATH": os.environ["PATH"], "KUBEPIE_OIDC_ISSUER": "http://127.0.0.1:9",
            "KUBEPIE_CLIENT_ID": "kubepie", "KUBEPIE_CLIENT_SECRET": "s",
            "KUBEPIE_PUBLIC_URL": "http://127.0.0.1:8780",
            "KUBEPIE_SESSION_SECRET": "x" * 32}
    result = subprocess.run([str(VENV_BIN / "jupyterhub-sidecars"), "kubepie", "gateway"],
                            env={**base, **env}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "x" * 32 not in result.stderr


