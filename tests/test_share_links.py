"""Share links: read-only URLs of one folder or file, made with a token or on the page.

Served by the owner's file server as the owner's uid: expiry and revocation at once, never
outside the shared folder (traversal, symlinks), never a write, the kernel's permissions still
decide; a folder link browses and works as an rclone and fsspec remote; links survive a
gateway restart (SQLite here, Secrets with the Kubernetes API double).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from harness.gateway import Gateway, access_token, make_homes, running_gateway, temp_root
from harness.oidc import OidcProvider
from harness.tools import require_tool
from services.identity.claims import Identity
from services.kubepie.gateway.links import ShareLink, token_hash

pytestmark = pytest.mark.slow
API = "/_kubepie/api/links"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Gateway, OidcProvider]]:
    root = make_homes(temp_root())
    shared = root / "home" / "alice" / "results"
    (shared / "sub").mkdir(parents=True)
    (shared / "scan.csv").write_text("energy,counts\n8.0,120\n")
    (shared / "sub" / "deep.txt").write_text("deep")
    (shared / "locked.txt").write_text("not even for alice")
    (shared / "locked.txt").chmod(0)
    os.symlink(root / "home" / "alice" / "secret.txt", shared / "escape.txt")
    os.symlink("sub", shared / "inside")
    if os.geteuid() == 0:
        for path in (shared, shared / "sub", shared / "scan.csv", shared / "sub" / "deep.txt",
                     shared / "locked.txt"):
            os.chown(path, 1001, 1001)
        for link in (shared / "escape.txt", shared / "inside"):
            os.lchown(link, 1001, 1001)
    with running_gateway(root, {"KUBEPIE_LINK_MAX_LIFETIME": "2d"}) as served:
        yield served


def bearer(provider: OidcProvider, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token(provider, user)}"}


def make(served: tuple[Gateway, OidcProvider], path: str, **extra: object) -> dict[str, object]:
    gateway, provider = served
    answer = httpx.post(f"{gateway.url}{API}", headers=bearer(provider),
                        json={"path": path, **extra}, timeout=30)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def raw(url: str, method: str, target: str, body: bytes | None = None) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_folder_link_browses_and_downloads_without_a_login(
        served: tuple[Gateway, OidcProvider]) -> None:
    link = make(served, "/home/results", label="for the collaboration", days=1)
    url = str(link["url"])
    assert url.endswith("/") and "/_kubepie/s/" in url and link["folder"] is True
    listing = httpx.get(url, headers={"Accept": "text/html"})
    assert listing.status_code == 200 and "scan.csv" in listing.text
    prefix = urlsplit(url).path
    hrefs = re.findall(r'href="([^"]+)"', listing.text)
    assert hrefs and all(not href.startswith("/") or href.startswith(prefix) for href in hrefs)
    assert "scan.csv" in hrefs or f"{prefix}scan.csv" in hrefs  # the link's own URLs
    assert "escape.txt" not in listing.text  # a symlink leaving the folder is hidden
    assert httpx.get(url + "scan.csv").text == "energy,counts\n8.0,120\n"
    assert httpx.get(url + "sub/deep.txt").text == "deep"
    assert httpx.get(url + "inside/deep.txt").text == "deep"  # a link inside is fine
    ranged = httpx.get(url + "scan.csv", headers={"Range": "bytes=0-5"})
    assert ranged.status_code == 206 and ranged.text == "energy"
    found = httpx.request("PROPFIND", url, headers={"Depth": "1"})
    assert found.status_code == 207 and f"<D:href>{prefix}sub/</D:href>" in found.text
    assert "/home/" not in found.text  # nothing of the owner's own paths shows


def test_a_file_link_is_published_under_its_name(served: tuple[Gateway, OidcProvider]) -> None:
    link = make(served, "home/results/scan.csv")
    url = str(link["url"])
    assert url.endswith("/scan.csv") and link["folder"] is False
    assert httpx.get(url).text.startswith("energy")
    bare = url.rsplit("/", 1)[0]
    assert httpx.get(bare, follow_redirects=False).headers["Location"].endswith("/scan.csv")
    assert httpx.get(bare + "/../results/sub/deep.txt").status_code in (400, 404)


def test_traversal_symlinks_and_writes_are_refused(served: tuple[Gateway, OidcProvider]) -> None:
    gateway, _ = served
    url = str(make(served, "/home/results")["url"])
    prefix = urlsplit(url).path
    for target in ("../secret.txt", "%2e%2e/secret.txt", "sub/../../secret.txt",
                   "sub/%2e%2e/%2e%2e/secret.txt", "..%2fsecret.txt", "%2fetc/passwd"):
        assert raw(gateway.url, "GET", prefix + target) == 400, target
    assert httpx.get(url + "escape.txt").status_code == 403  # out of the shared folder
    forged = {"X-Kubepie-Share": "/home/", "X-Kubepie-Share-Prefix": "/"}  # the gateway's own
    assert httpx.get(url + "escape.txt", headers=forged).status_code == 403
    own = httpx.request("PROPFIND", f"{gateway.url}/home/", headers={
        **forged, **bearer(served[1]), "Depth": "1"})
    assert own.status_code == 207 and "<D:href>/home/results/</D:href>" in own.text
    for method in ("PUT", "DELETE", "MKCOL", "PROPPATCH", "LOCK", "MOVE", "COPY", "POST"):
        assert raw(gateway.url, method, prefix + "scan.csv", b"x") == 403, method
    assert (gateway.root / "home/alice/results/scan.csv").read_text().startswith("energy")


def test_the_owners_permissions_still_decide(served: tuple[Gateway, OidcProvider]) -> None:
    if os.geteuid() != 0:
        pytest.skip("the owner's server runs as another uid only as root")
    url = str(make(served, "/home/results")["url"])
    assert httpx.get(url + "locked.txt").status_code == 403


def test_links_are_listed_with_uses_and_revoked_at_once(
        served: tuple[Gateway, OidcProvider]) -> None:
    gateway, provider = served
    link = make(served, "/home/results/sub", label="revoke me")
    url = str(link["url"])
    for _ in range(3):
        assert httpx.get(url + "deep.txt").status_code == 200
    listed = httpx.get(f"{gateway.url}{API}", headers=bearer(provider)).json()["links"]
    [mine] = [item for item in listed if item["id"] == link["id"]]
    assert mine["uses"] == 3 and mine["path"] == "/home/results/sub/"
    assert mine["label"] == "revoke me" and "url" not in mine  # the token is shown once
    assert httpx.delete(f"{gateway.url}{API}/{link['id']}",
                        headers=bearer(provider, "bob")).status_code == 404  # not bob's
    assert httpx.delete(f"{gateway.url}{API}/{link['id']}",
                        headers=bearer(provider)).status_code == 204
    assert httpx.get(url + "deep.txt").status_code == 404


def test_links_expire_and_the_longest_lifetime_is_the_operators(
        served: tuple[Gateway, OidcProvider]) -> None:
    short = make(served, "/home/results", days=3 / 86400)  # three seconds
    assert httpx.get(str(short["url"])).status_code == 200
    time.sleep(3.5)
    assert httpx.get(str(short["url"])).status_code == 404
    long = make(served, "/home/results", days=365)
    assert int(str(long["expires"])) <= time.time() + 2 * 86400 + 5  # KUBEPIE_LINK_MAX...


def test_bad_link_requests(served: tuple[Gateway, OidcProvider]) -> None:
    gateway, provider = served
    for path, reason in (("/home/nope", "does not exist"), ("/", "not /"),
                         ("/home/../etc", "not a path")):
        answer = httpx.post(f"{gateway.url}{API}", headers=bearer(provider),
                            json={"path": path})
        assert answer.status_code == 400 and reason in answer.json()["error"], answer.text
    assert httpx.post(f"{gateway.url}{API}", json={"path": "/home"}).status_code == 401
    assert httpx.get(f"{gateway.url}/_kubepie/s/{'x' * 43}/").status_code == 404


def test_a_folder_link_mirrors_with_wget_as_the_page_suggests(
        served: tuple[Gateway, OidcProvider], tmp_path: Path) -> None:
    url = str(make(served, "/home/results")["url"])
    wget = require_tool("wget")
    subprocess.run([wget, "-q", "-r", "-np", "-nH", "--cut-dirs=3", "-e", "robots=off", url],
                   cwd=tmp_path, timeout=60, check=False)  # exit 8: the 403 of locked.txt
    assert (tmp_path / "scan.csv").read_text() == "energy,counts\n8.0,120\n"
    assert (tmp_path / "sub" / "deep.txt").read_text() == "deep"
    assert not (tmp_path / "escape.txt").exists()
    single = subprocess.run([wget, "-q", "-O", "-", url + "scan.csv"], capture_output=True,
                            text=True, timeout=60, check=True)
    assert single.stdout.startswith("energy")


def test_a_folder_link_is_an_rclone_and_fsspec_remote(
        served: tuple[Gateway, OidcProvider], tmp_path: Path) -> None:
    url = str(make(served, "/home/results")["url"])
    rclone = require_tool("rclone")
    listed = subprocess.run([rclone, "--config", "/dev/null", "lsjson", "-R",
                             "--webdav-url", url, ":webdav:"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    paths = {item["Path"] for item in json.loads(listed) if not item["IsDir"]}
    assert {"scan.csv", "sub/deep.txt"} <= paths and "escape.txt" not in paths
    subprocess.run([rclone, "--config", "/dev/null", "copy", "--webdav-url", url,
                    ":webdav:sub", str(tmp_path)], check=True, timeout=60)
    assert (tmp_path / "deep.txt").read_text() == "deep"
    import fsspec
    import pandas as pd

    fs = fsspec.filesystem("webdav", base_url=url)
    assert {Path(p).name for p in fs.ls("", detail=False)} >= {"scan.csv", "sub"}
    frame = pd.read_csv("webdav://scan.csv", storage_options={"base_url": url})
    assert list(frame["counts"]) == [120]


def test_links_survive_a_gateway_restart(served: tuple[Gateway, OidcProvider]) -> None:
    gateway, _ = served
    url = str(make(served, "/home/results")["url"])
    assert gateway.stop() == 0
    gateway.start()
    assert httpx.get(url + "scan.csv").status_code == 200


async def test_the_secret_store_keeps_links_for_every_replica(tmp_path: Path) -> None:
    """The kubernetes backend's store, against the API double: one Secret per link."""
    import yaml
    from kubernetes_asyncio import client, config

    from harness.kube_api import KubeApi, role_rules
    from services.kubepie.gateway.backends.kube_keys import SecretLinkStore

    api = KubeApi(rules=role_rules("deploy/kubepie/rbac.yaml", "kubepie-gateway"))
    await api.start()
    try:
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(api.kubeconfig()))
        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(tmp_path / "kubeconfig"),
                                      client_configuration=configuration)
        async with client.ApiClient(configuration) as api_client:
            core = client.CoreV1Api(api_client)
            one, other = SecretLinkStore(core, "kubepie"), SecretLinkStore(core, "kubepie")
            owner = Identity("_alice.", 1001, 1001)  # a valid user name, an invalid label
            link = ShareLink("LK1", token_hash("t" * 43), owner, "/home/x/", True, "", 1.0,
                             time.time() + 60)
            await one.add(link)
            found = await other.by_hash(token_hash("t" * 43))
            assert found is not None and found.owner == owner
            assert [item.link_id for item in await other.for_user("_alice.")] == ["LK1"]
            assert await other.for_user("alice") == []  # the label is shared, the record not
            await other.count_use(found)
            assert (await SecretLinkStore(core, "kubepie").by_hash(link.token_hash)).uses == 1
            assert await one.remove(link) and await other.for_user("_alice.") == []
            secret_names = [name for (_, name) in api.secrets]
            assert secret_names == []
    finally:
        await api.stop()
        await asyncio.sleep(0)
