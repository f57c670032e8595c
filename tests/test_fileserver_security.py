"""Attacks on the file server: each rule of the security list is tried and must hold."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fileserver import (
    NOBODY,
    TRAVERSALS,
    Fileserver,
    hand_over,
    open_folder,
    running_as_root,
)
from harness.tools import VENV_BIN, in_ci

pytestmark = pytest.mark.slow

SECRET = "the-secret-outside-the-mount"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Fileserver, Path]]:
    with open_folder() as folder:
        home, data = folder / "home", folder / "data"
        for path in (home, data, folder / "outside"):
            path.mkdir()
        (folder / "outside" / "secret.txt").write_text(SECRET)
        (folder / "secret.txt").write_text(SECRET)
        (data / "readme.txt").write_text("read me")
        (home / "sub").mkdir()
        (home / "sub" / "inner.txt").write_text("inner")
        os.symlink(folder / "outside", home / "escape")
        os.symlink(folder / "outside" / "secret.txt", home / "passwd")
        os.symlink("sub", home / "inside-link")
        with Fileserver({"home": home, "data": data}, read_only=("data",)) as server:
            yield server, folder


def request(server: Fileserver, method: str, target: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Send ``target`` byte for byte (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()




@pytest.mark.parametrize("target", TRAVERSALS)
def test_paths_that_leave_the_mount_are_refused(served: tuple[Fileserver, Path],
                                                target: str) -> None:
    server, folder = served
    for method in ("GET", "PROPFIND", "DELETE"):
        status, body = request(server, method, target, headers={"Depth": "0"})
        assert status == 400, (method, target, status)
        assert SECRET not in body
    status, _ = request(server, "PUT", target, body=b"overwrite")
    assert status == 400
    assert (folder / "secret.txt").read_text() == SECRET


def test_symlinks_are_not_followed_out_of_the_mount(served: tuple[Fileserver, Path]) -> None:
    server, folder = served
    for target in ("/home/passwd", "/home/escape/secret.txt", "/home/escape/"):
        status, body = request(server, "GET", target)
        assert status == 403, target
        assert SECRET not in body
    status, _ = request(server, "PUT", "/home/escape/planted.txt", body=b"x")
    assert status == 403
    assert not (folder / "outside" / "planted.txt").exists()
    status, _ = request(server, "COPY", "/home/passwd",
                        headers={"Destination": "/home/stolen.txt"})
    assert status == 403
    status, listing = request(server, "PROPFIND", "/home/", headers={"Depth": "1"})
    assert status == 207
    assert "/home/escape" not in listing and "/home/passwd" not in listing
    assert "/home/inside-link/" in listing  # a link that stays inside works
    assert request(server, "GET", "/home/inside-link/inner.txt") == (200, "inner")
    # DELETE acts on the link itself, never on what it points to.
    assert request(server, "DELETE", "/home/passwd")[0] == 204
    assert (folder / "outside" / "secret.txt").read_text() == SECRET
    assert not os.path.lexists(folder / "home" / "passwd")


def test_destination_must_be_this_server_and_inside_the_mounts(
        served: tuple[Fileserver, Path]) -> None:
    server, folder = served
    cases = {
        "http://evil.example/home/copy.txt": 502,
        f"http://127.0.0.1:{server.port + 1}/home/copy.txt": 502,
        "/etc/passwd": 403,
        f"http://127.0.0.1:{server.port}/home/../secret.txt": 400,
        f"http://127.0.0.1:{server.port}/home/%2e%2e/secret.txt": 400,
        "/data/copy.txt": 403,  # read-only mount
        "/": 403,
    }
    for destination, expected in cases.items():
        for method in ("COPY", "MOVE"):
            status, _ = request(server, method, "/home/sub/inner.txt",
                                headers={"Destination": destination})
            assert status == expected, (method, destination, status)
    assert (folder / "secret.txt").read_text() == SECRET
    assert (folder / "home" / "sub" / "inner.txt").exists()
    # Behind a gateway that sets X-Forwarded-Host, its public name is this server too.
    status, _ = request(server, "COPY", "/home/sub/inner.txt", headers={
        "Destination": "https://files.example.org/home/copied.txt",
        "X-Forwarded-Host": "files.example.org"})
    assert status == 201


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol4;</D:displayname></D:prop></D:propfind>"""


def external(root: str, path: Path) -> bytes:
    return f"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{path}">]>
<D:{root} xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop><Z:p>&xxe;</Z:p></D:prop></D:set>
<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>
<D:owner>&xxe;</D:owner></D:{root}>""".encode()


def test_xml_bombs_and_external_entities_are_refused(served: tuple[Fileserver, Path]) -> None:
    server, folder = served
    started = time.monotonic()
    status, _ = request(server, "PROPFIND", "/home/", body=BOMB, headers={"Depth": "0"})
    assert status == 400
    assert time.monotonic() - started < 2
    for method, root in (("PROPPATCH", "propertyupdate"), ("LOCK", "lockinfo"),
                         ("PROPFIND", "propfind")):
        status, body = request(server, method, "/home/sub/inner.txt",
                               body=external(root, folder / "secret.txt"),
                               headers={"Depth": "0"})
        assert status == 400, method
        assert SECRET not in body
    status, body = request(server, "PROPFIND", "/home/sub/inner.txt", headers={"Depth": "0"})
    assert SECRET not in body and "urn:x" not in body


def test_huge_xml_bodies_are_refused_before_parsing(served: tuple[Fileserver, Path]) -> None:
    server, _ = served
    huge = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>' + \
        b"<D:displayname/>" * 400_000 + b"</D:prop></D:propfind>"
    status, _ = request(server, "PROPFIND", "/home/", body=huge, headers={"Depth": "0"})
    assert status == 413
    # The same without Content-Length (chunked): counted while read.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("PROPPATCH", "/home/sub/inner.txt",
                       body=iter([huge[i:i + 65536] for i in range(0, len(huge), 65536)]),
                       encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    assert connection.getresponse().status == 413
    connection.close()


def test_depth_infinity_propfind_is_refused(served: tuple[Fileserver, Path]) -> None:
    """An explicit infinity is refused; no Depth at all is 1, as SabreDAV answers (fsspec's
    webdav4 sends none); a Depth that is not 0, 1 or infinity is a bad request."""
    server, _ = served
    status, body = request(server, "PROPFIND", "/home/", headers={"Depth": "infinity"})
    assert status == 403 and "propfind-finite-depth" in body
    status, body = request(server, "PROPFIND", "/home/")
    assert status == 207 and "/home/sub/" in body and "/home/sub/inner.txt" not in body
    assert request(server, "PROPFIND", "/home/", headers={"Depth": "2"})[0] == 400


def test_permission_denied_is_403_never_500(served: tuple[Fileserver, Path]) -> None:
    server, folder = served
    locked = folder / "home" / "locked"
    locked.mkdir()
    (locked / "private.txt").write_text("private")
    (folder / "home" / "private.txt").write_text("private")
    if running_as_root():
        os.chown(locked, 0, 0)
        os.chown(locked / "private.txt", 0, 0)
        os.chown(folder / "home" / "private.txt", 0, 0)
    (folder / "home" / "private.txt").chmod(0o600)
    (locked / "private.txt").chmod(0o600)
    locked.chmod(0o700 if running_as_root() else 0o000)
    try:
        assert request(server, "GET", "/home/private.txt")[0] == 403
        assert request(server, "PUT", "/home/private.txt", body=b"x")[0] in (201, 204, 403)
        assert request(server, "GET", "/home/locked/private.txt")[0] == 403
        assert request(server, "PROPFIND", "/home/locked/", headers={"Depth": "1"})[0] == 403
        assert request(server, "PUT", "/home/locked/new.txt", body=b"x")[0] == 403
        assert request(server, "DELETE", "/home/locked/private.txt")[0] == 403
        assert request(server, "MKCOL", "/home/locked/new/")[0] == 403
        assert request(server, "PUT", "/data/readme.txt", body=b"x")[0] == 403
        assert request(server, "DELETE", "/data/readme.txt")[0] == 403
        assert (folder / "data" / "readme.txt").read_text() == "read me"
        assert "Traceback" not in server.log()
    finally:
        locked.chmod(0o755)


def need_root() -> None:
    if not running_as_root():
        message = "dropping to another uid needs root"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def test_as_root_it_becomes_the_user_and_the_kernel_decides(tmp_path: Path) -> None:
    need_root()
    with open_folder() as folder:
        home = folder / "home"
        home.mkdir()
        (home / "theirs.txt").write_text("another user's")
        os.chown(home / "theirs.txt", 4242, 4242)
        (home / "theirs.txt").chmod(0o600)
        (home / "group.txt").write_text("the group's")
        os.chown(home / "group.txt", 0, 5000)
        (home / "group.txt").chmod(0o640)
        os.chown(home, NOBODY, NOBODY)
        with Fileserver({"home": home}, extra_env={"FILESERVER_GROUPS": "5000"},
                        give_folders=False) as server:
            assert server.process is not None
            status = Path(f"/proc/{server.process.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            assert fields["Uid"].split() == [str(NOBODY)] * 4
            assert fields["Gid"].split() == [str(NOBODY)] * 4
            assert fields["Groups"].split() == ["5000"]
            assert fields["CapEff"].strip() == "0000000000000000"
            assert request(server, "PUT", "/home/mine.txt", body=b"mine")[0] == 201
            assert (home / "mine.txt").stat().st_uid == NOBODY
            assert (home / "mine.txt").stat().st_gid == NOBODY
            assert request(server, "GET", "/home/theirs.txt")[0] == 403
            assert request(server, "GET", "/home/group.txt") == (200, "the group's")
        with Fileserver({"home": home}, give_folders=False) as server:  # not in the group
            assert request(server, "GET", "/home/group.txt")[0] == 403


def start_failure(env: dict[str, str]) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
    result = subprocess.run([str(VENV_BIN / "jupyterhub-sidecars"), "kubepie", "fileserver"],
                            env={**base, **env}, capture_output=True, text=True, timeout=30,
                            check=False)
    return result.returncode, result.stderr.strip()


def test_refuses_to_serve_as_root_or_with_bad_settings(tmp_path: Path) -> None:
    if running_as_root():
        code, message = start_failure({"FILESERVER_MOUNTS": f"home={tmp_path}"})
        assert code == 2
        assert "refusing to serve files as root" in message
    else:
        code, message = start_failure({"FILESERVER_MOUNTS": f"home={tmp_path}",
                                       "FILESERVER_UID": "4242", "FILESERVER_GID": "4242"})
        assert code == 2 and "needs the server to start as root" in message
    for env, expected in [
        ({"FILESERVER_MOUNTS": "home"}, "expected name=/folder"),
        ({"FILESERVER_MOUNTS": "home=relative/path"}, "must be an absolute path"),
        ({"FILESERVER_MOUNTS": f"home={tmp_path}/missing"}, "is not a folder"),
        ({"FILESERVER_MOUNTS": f"metrics={tmp_path}"}, "the service's own route"),
        ({"FILESERVER_MOUNTS": f"home={tmp_path},home={tmp_path}"}, "given twice"),
        ({"FILESERVER_MOUNTS": f"../x={tmp_path}"}, "use letters, digits"),
        ({"FILESERVER_MOUNTS": f"home={tmp_path}", "FILESERVER_READ_ONLY": "data"},
         "read-only names no mount: data"),
        ({"FILESERVER_MOUNTS": f"home={tmp_path}", "FILESERVER_UID": "1000"},
         "give FILESERVER_UID and FILESERVER_GID together"),
        ({"FILESERVER_MOUNTS": f"home={tmp_path}", "FILESERVER_UID": "0",
          "FILESERVER_GID": "0"}, "FILESERVER_UID='0'"),
        ({"FILESERVER_MOUNTS": f"home={tmp_path}", "FILESERVER_GROUPS": "1,wheel"},
         "'wheel' is not a numeric gid"),
        ({"FILESERVER_MOUNTS": f"home={tmp_path}", "FILESERVER_MAX_UPLOAD_SIZE": "lots"},
         "is not a byte quantity"),
    ]:
        code, message = start_failure(env)
        assert code == 2, env
        assert expected in message, (env, message)
        assert len(message.splitlines()) == 1, message
    hand_over(tmp_path)
