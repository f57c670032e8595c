"""The notebook as the user, on a real JupyterHub with the local spawner (as root).

alice and bob log in through the OIDC provider; the hub maps their claims (the same mapping
and the same storage definition as kubepie) and runs each notebook as the user's own uid, gid
and groups, with passwd/group entries so that ``id`` shows names. What alice saves in
JupyterLab is hers on disk and over WebDAV; bob can reach neither her files nor her sidecars.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.gateway import Gateway, remove, temp_root
from harness.hub import Hub, process_env
from harness.kernel import run_in_kernel
from harness.oidc import OidcProvider, log_in
from harness.tools import in_ci
from services.identity.claims import Identity
from services.kubepie.gateway.accesskeys import AccessKeys, SqliteKeyStore

pytestmark = pytest.mark.slow

USERS = [
    {"sub": "alice", "preferred_username": "alice", "uidNumber": 1001, "gidNumber": 1001,
     "groups": ["xray"]},
    # a groups claim as one string, as glewlwyd and some LDAP-backed providers send it
    {"sub": "bob", "preferred_username": "bob", "uidNumber": 1002, "gidNumber": 1002,
     "groups": "xray, bio"},
    {"sub": "carol", "preferred_username": "carol"},  # no uidNumber
    {"sub": "mallory", "preferred_username": "mallory", "uidNumber": 0, "gidNumber": 0},
    {"sub": "gus", "preferred_username": "gus", "uidNumber": 1003, "gidNumber": 500},
]
GROUP_GIDS = "xray=5000,bio=5001"


@dataclass
class World:
    root: Path
    hub: Hub
    gateway: Gateway
    provider: OidcProvider


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if os.geteuid() != 0:
        message = "running notebooks as other uids needs a hub running as root"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    root = temp_root()
    root.chmod(0o755)
    for folder in ("home", "groups"):
        (root / folder).mkdir(mode=0o755)
    shared = root / "groups" / "xray"
    shared.mkdir()
    os.chown(shared, 0, 5000)
    shared.chmod(0o2770)
    storage = root / "storage.yaml"
    storage.write_text(json.dumps({
        "volumes": [{"name": "homes", "hostPath": {"path": str(root / "home")}},
                    {"name": "groups", "hostPath": {"path": str(root / "groups")}}],
        "mounts": [{"name": "home", "volume": "homes", "subPath": "{username}",
                    "path": "/home/{username}"}],
        "groupMounts": {"volume": "groups", "subPath": "{group}", "path": "/groups/{group}"},
    }))
    provider = OidcProvider(root / "provider.log", token_max_age=300, users=USERS)
    hub = Hub(root / "hub", oidc_issuer="", extra_env={"TEST_STORAGE_FILE": str(storage),
                                                        "TEST_GROUP_GIDS": GROUP_GIDS})
    gateway = Gateway(provider, root, {"KUBEPIE_STORAGE_FILE": str(storage),
                                       "KUBEPIE_GROUP_GIDS": GROUP_GIDS})
    try:
        provider.start()
        hub.oidc_issuer = provider.issuer
        hub.start()
        gateway.start()
        yield World(root, hub, gateway, provider)
    finally:
        gateway.stop()
        for user in ("alice", "bob"):
            hub.api("DELETE", f"/users/{user}/server")
        for user in ("alice", "bob"):
            _wait_gone(hub, user)
        hub.stop()
        provider.stop()
        remove(root)


def _wait_gone(hub: Hub, user: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and hub.api("GET", f"/users/{user}").status_code == 200 \
            and hub.server_model(user) is not None:
        time.sleep(0.2)


def start(world: World, user: str) -> tuple[str, str]:
    """Log in as ``user``, start their server; its URL and a token of the user's."""
    if world.hub.api("GET", f"/users/{user}").status_code == 404:
        log_in(world.hub.public_url, user).close()
    if world.hub.server_model(user) is None:
        response = world.hub.api("POST", f"/users/{user}/server", json={"profile": "long"})
        assert response.status_code in (201, 202), response.text
        world.hub.wait_ready(user)
    token = world.hub.api("POST", f"/users/{user}/tokens", json={
        "note": "test", "scopes": [f"access:servers!user={user}"]}).json()["token"]
    return f"{world.hub.public_url}/user/{user}", str(token)


def notebook_env(world: World, user: str) -> dict[str, str]:
    model = world.hub.server_model(user)
    assert model is not None
    return process_env(int(model["state"]["pid"]))


def test_the_notebook_runs_as_the_user_with_names(world: World) -> None:
    url, token = start(world, "alice")
    out = run_in_kernel(url, token, "import os, subprocess\n"
                        "print(subprocess.run(['id'], capture_output=True, text=True).stdout)\n"
                        "print(subprocess.run(['whoami'], capture_output=True, text=True)"
                        ".stdout)\nprint('HOME=' + os.environ['HOME'])\nprint(os.getcwd())")
    lines = out.splitlines()
    assert lines[0] == "uid=1001(alice) gid=1001(alice) groups=1001(alice),5000(xray)", out
    assert "alice" in lines and f"HOME={world.root}/home/alice" in lines
    assert lines[-1] == f"{world.root}/home/alice"
    # The machine's own accounts still resolve (the image's accounts, in a pod).
    assert run_in_kernel(url, token, "import pwd; print(pwd.getpwuid(0).pw_name)").strip() \
        == "root"
    # The machine's /etc/passwd is untouched: only the notebook's namespace has alice.
    assert "alice:x:1001" not in Path("/etc/passwd").read_text()


def test_groups_sent_as_one_string_are_all_mapped(world: World) -> None:
    url, token = start(world, "bob")
    out = run_in_kernel(url, token, "import subprocess\n"
                        "print(subprocess.run(['id'], capture_output=True, text=True).stdout)")
    assert out.strip() == "uid=1002(bob) gid=1002(bob) groups=1002(bob),5000(xray),5001(bio)"


def test_what_alice_saves_in_jupyterlab_is_hers_over_webdav(world: World) -> None:
    url, token = start(world, "alice")
    notebook = {"type": "notebook", "format": "json", "content": {
        "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
    saved = httpx.put(f"{url}/api/contents/results.ipynb", json=notebook, timeout=30,
                      headers={"Authorization": f"token {token}"})
    assert saved.status_code == 201, saved.text
    on_disk = world.root / "home" / "alice" / "results.ipynb"
    assert (on_disk.stat().st_uid, on_disk.stat().st_gid) == (1001, 1001)
    shared = httpx.put(f"{url}/api/contents/shared.txt", timeout=30,
                       headers={"Authorization": f"token {token}"},
                       json={"type": "file", "format": "text", "content": "for the group"})
    assert shared.status_code == 201
    # Through kubepie, with access keys of the same identities.
    alice_key, bob_key = _key(world, "alice", 1001, (5000,), ("xray",)), \
        _key(world, "bob", 1002, (5000, 5001), ("bio", "xray"))
    via_dav = httpx.get(f"{world.gateway.url}/home/results.ipynb", auth=alice_key)
    assert via_dav.status_code == 200 and via_dav.content == on_disk.read_bytes()
    assert httpx.get(f"{world.gateway.url}/home/results.ipynb",
                     auth=bob_key).status_code == 404  # bob's /home/ is his own
    listing = httpx.request("PROPFIND", f"{world.gateway.url}/home/", auth=bob_key,
                            headers={"Depth": "1"})
    assert listing.status_code == 207 and "results.ipynb" not in listing.text


def _key(world: World, user: str, uid: int, gids: tuple[int, ...],
         groups: tuple[str, ...]) -> tuple[str, str]:
    async def create() -> tuple[str, str]:
        store = SqliteKeyStore(world.root / "keys.sqlite")
        try:
            key, secret = await AccessKeys(store, max_lifetime=None).create(
                Identity(user, uid, uid, gids, groups), "test", None)
        finally:
            store.close()
        return key.key_id, secret
    return asyncio.run(create())


def test_bob_reaches_none_of_alices_sidecars_tokens_or_processes(world: World) -> None:
    """Locally every sidecar shares one machine: its socket and files are the user's."""
    start(world, "alice")
    bob_url, bob_token = start(world, "bob")
    alice = notebook_env(world, "alice")
    model = world.hub.server_model("alice")
    assert model is not None
    helper_pid = model["state"]["sidecar_pids"]["tokenhelper"]
    walltime_socket = alice["JUPYTERHUB_SIDECARS_WALLTIME_URL"]
    token_socket = alice["JUPYTERHUB_SIDECARS_TOKEN_URL"]
    assert walltime_socket.startswith("http+unix://")  # no loopback port to try
    code = f"""
import socket, urllib.parse
def attempt(what, action):
    try:
        action()
        print(what, "OPEN")
    except PermissionError:
        print(what, "denied")
def connect(path):
    socket.socket(socket.AF_UNIX).connect(path)
def path_of(url):
    return urllib.parse.unquote(url.split("://", 1)[1])
attempt("token socket", lambda: connect(path_of({token_socket!r})))
attempt("walltime socket", lambda: connect(path_of({walltime_socket!r})))
attempt("agent socket", lambda: connect({alice["OIDC_SOCK"]!r}))
attempt("bearer file", lambda: open({alice["BEARER_TOKEN_FILE"]!r}).read())
attempt("helper environ", lambda: open("/proc/{helper_pid}/environ").read())
attempt("helper memory", lambda: open("/proc/{helper_pid}/mem", "rb").read(1))
"""
    out = run_in_kernel(bob_url, bob_token, code)
    for what in ("token socket", "walltime socket", "agent socket", "bearer file",
                 "helper environ", "helper memory"):
        assert f"{what} denied" in out, out
    # alice herself reaches her sidecars (as in her pod), and gets a token.
    alice_url, alice_token = start(world, "alice")
    own = run_in_kernel(alice_url, alice_token, f"""
import http.client, socket, urllib.parse
class UnixHTTP(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(urllib.parse.unquote({token_socket!r}.split("://", 1)[1]))
connection = UnixHTTP("localhost")
connection.request("GET", "/token")
print(connection.getresponse().status)
print(len(open({alice["BEARER_TOKEN_FILE"]!r}).read().strip()) > 10)
""")
    assert own.split() == ["200", "True"], own
    # Credentials are files only root can read; the sidecars dropped to their own ids.
    helper = process_env(int(helper_pid))
    for setting in ("TOKENHELPER_API_TOKEN_FILE", "TOKENHELPER_CLIENT_SECRET_FILE"):
        info = Path(helper[setting]).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
        assert setting.removesuffix("_FILE") not in helper  # never the value itself
    status = Path(f"/proc/{helper_pid}/status").read_text()
    assert "Uid:\t1001\t1001\t1001\t1001" in status
    walltime_pid = model["state"]["sidecar_pids"]["walltime"]
    assert "Uid:\t65534\t65534\t65534\t65534" in Path(f"/proc/{walltime_pid}/status").read_text()


@pytest.mark.parametrize(("user", "reason"), [
    ("carol", "claim 'uidNumber' is missing"),
    ("mallory", "id 0 (root) is never accepted"),
    ("gus", "500 is outside the accepted range"),
])
def test_claims_without_a_usable_identity_refuse_the_spawn(world: World, user: str,
                                                           reason: str) -> None:
    browser = log_in(world.hub.public_url, user)
    try:
        form = browser.get(f"/hub/spawn/{user}")
        xsrf = re.search(r'xsrf_token: "([^"]+)"', form.text)
        assert xsrf, form.text[:500]
        # The pre-spawn hook refuses at once, so the spawn page itself answers, with the
        # reason (JupyterHub renders it in its error box).
        page = browser.post(f"/hub/spawn/{user}", data={"profile": "long",
                                                        "_xsrf": xsrf.group(1)})
    finally:
        browser.close()
    assert page.status_code == 403
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.text))
    assert "your account cannot start a server here:" in text, text[-2000:]
    assert reason in text
    # Nothing half-created: no server, no token minted for its sidecars.
    assert world.hub.server_model(user) is None
    tokens = world.hub.api("GET", f"/users/{user}/tokens").json()["api_tokens"]
    assert not [t for t in tokens if (t.get("note") or "").startswith("jupyterhub-sidecars")]
