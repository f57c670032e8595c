"""Every WebDAV client people pull data with, against the file server alone and through the
gateway (access key; bearer token where the client takes one).

Each client does what its users do: list, stat, upload, download, a range read, rename, copy,
delete, mkdir, Unicode names, and a 50 MiB file whose checksum must survive the round trip.
fsspec's WebDAV filesystem (webdav4) is tested under pandas (CSV, parquet through pyarrow) and
xarray (a netCDF-4/HDF5 file opened through fsspec), as a notebook user reads data. litmus runs
against both too (tests/test_fileserver_litmus.py, tests/test_gateway_paths.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.fileserver import Fileserver, open_folder, running_as_root
from harness.gateway import Gateway, access_token, make_homes, remove, temp_root
from harness.oidc import OidcProvider
from harness.tools import in_ci, require_debian_module, require_tool
from services.identity.claims import Identity
from services.kubepie.gateway.accesskeys import AccessKeys, SqliteKeyStore

pytestmark = pytest.mark.slow
BIG = 50 * 1024 * 1024
# No "#" in a name: webdav4 0.11 puts it into the URL unencoded (httpx then refuses it).
NAMES = ("données é ü.txt", "日本語 file.csv", "a & b (1) + c.txt")


@dataclass
class Target:
    name: str
    url: str                       # the WebDAV root (no trailing slash)
    home: Path                     # where /home/ is on disk
    basic: tuple[str, str] | None  # an access key, through the gateway
    bearer: str | None             # a token, through the gateway
    uid: int                       # who files belong to

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    data = os.urandom(BIG)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module", params=["direct", "gateway-key", "gateway-bearer"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "direct":
        with open_folder() as folder:
            (folder / "home").mkdir()
            with Fileserver({"home": folder / "home"}) as server:
                yield Target("direct", server.url, folder / "home", None, None,
                             65534 if running_as_root() else os.getuid())
        return
    root = make_homes(temp_root())
    provider = OidcProvider(root / "provider.log", token_max_age=3600)
    provider.start()
    gateway = Gateway(provider, root, {"KUBEPIE_OPAQUE_TOKENS": "userinfo"})
    try:
        gateway.start()
        store = SqliteKeyStore(root / "keys.sqlite")
        try:
            key, secret = asyncio.run(AccessKeys(store, max_lifetime=None).create(
                Identity("alice", 1001, 1001, (5000,), ("xray",)), "clients", None))
        finally:
            store.close()
        uid = 1001 if running_as_root() else os.getuid()
        if request.param == "gateway-key":
            yield Target("gateway-key", gateway.url, root / "home" / "alice",
                         (key.key_id, secret), None, uid)
        else:
            yield Target("gateway-bearer", gateway.url, root / "home" / "alice", None,
                         access_token(provider, "alice"), uid)
    finally:
        gateway.stop()
        provider.stop()
        remove(root)


def run(*command: str, env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 180) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, input=stdin, check=False)
    assert result.returncode == 0, f"{command[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def owned(target: Target, path: Path) -> None:
    if running_as_root():
        assert path.stat().st_uid == target.uid, path


# -- fsspec / webdav4, pandas, xarray ---------------------------------------------------------

def _fs(target: Target):  # type: ignore[no-untyped-def]
    import fsspec

    return fsspec.filesystem("webdav", base_url=target.url, auth=target.basic,
                             headers=target.headers(), timeout=60)


def storage_options(target: Target) -> dict[str, object]:
    return {"base_url": target.url, "auth": target.basic, "headers": target.headers()}


def test_fsspec_webdav4(target: Target, big_file: tuple[Path, str], tmp_path: Path) -> None:
    fs = _fs(target)
    base = "home/fsspec"
    fs.mkdir(base)
    for name in NAMES:
        fs.pipe_file(f"{base}/{name}", name.encode())
    listed = {Path(p).name for p in fs.ls(base, detail=False)}
    assert listed == set(NAMES)
    info = fs.info(f"{base}/{NAMES[0]}")
    assert info["type"] == "file" and info["size"] == len(NAMES[0].encode())
    assert fs.isdir(base) and fs.exists(f"{base}/{NAMES[1]}")
    assert fs.cat_file(f"{base}/{NAMES[0]}", start=2, end=5) == NAMES[0].encode()[2:5]
    fs.mv(f"{base}/{NAMES[0]}", f"{base}/renamed.txt")
    fs.copy(f"{base}/renamed.txt", f"{base}/copied.txt")
    assert fs.cat_file(f"{base}/copied.txt") == NAMES[0].encode()
    fs.rm(f"{base}/renamed.txt")
    assert not fs.exists(f"{base}/renamed.txt")
    path, digest = big_file
    fs.put_file(str(path), f"{base}/big.bin")
    on_disk = target.home / "fsspec" / "big.bin"
    assert sha(on_disk) == digest
    owned(target, on_disk)
    fs.get_file(f"{base}/big.bin", str(tmp_path / "back.bin"))
    assert sha(tmp_path / "back.bin") == digest
    with fs.open(f"{base}/big.bin", "rb") as handle:  # random access, as readers seek
        handle.seek(BIG - 1000)
        assert handle.read() == path.read_bytes()[-1000:]
    fs.rm(base, recursive=True)
    assert not (target.home / "fsspec").exists()


def test_pandas_reads_and_writes_csv_and_parquet(target: Target) -> None:
    import pandas as pd

    frame = pd.DataFrame({"energy_keV": [8.0, 12.4, 17.5], "counts": [120, 845, 33]})
    (target.home / "scan.csv").write_text(frame.to_csv(index=False))
    if running_as_root():
        os.chown(target.home / "scan.csv", target.uid, -1)
    options = storage_options(target)
    # The example that answered 403 before: a bare PROPFIND (no Depth header) under it.
    read = pd.read_csv("webdav://home/scan.csv", storage_options=options)
    assert read.equals(frame)
    frame.to_parquet("webdav://home/scan.parquet", storage_options=options)
    assert pd.read_parquet("webdav://home/scan.parquet", storage_options=options).equals(frame)
    owned(target, target.home / "scan.parquet")


def test_xarray_opens_a_netcdf_hdf5_file_through_fsspec(target: Target,
                                                          tmp_path: Path) -> None:
    import numpy as np
    import xarray as xr

    data = xr.Dataset({"intensity": (("x", "y"), np.arange(2000.0).reshape(40, 50))},
                      coords={"x": np.arange(40), "y": np.arange(50)})
    local = tmp_path / "image.nc"
    data.to_netcdf(local, engine="h5netcdf")
    fs = _fs(target)
    fs.put_file(str(local), "home/image.nc")
    with fs.open("home/image.nc", "rb") as handle, \
            xr.open_dataset(handle, engine="h5netcdf") as opened:
        assert float(opened["intensity"].sum()) == float(data["intensity"].sum())
        assert opened["intensity"].shape == (40, 50)


# -- webdavclient3 ------------------------------------------------------------------------------

def test_webdavclient3(target: Target, big_file: tuple[Path, str], tmp_path: Path) -> None:
    from webdav3.client import Client

    options: dict[str, object] = {"webdav_hostname": target.url, "webdav_timeout": 120}
    if target.basic:
        options |= {"webdav_login": target.basic[0], "webdav_password": target.basic[1]}
    if target.bearer:
        options["webdav_token"] = target.bearer
    client = Client(options)
    client.mkdir("home/wdc3")
    for name in NAMES:
        (tmp_path / name).write_text(name)
        client.upload_sync(remote_path=f"home/wdc3/{name}", local_path=str(tmp_path / name))
    assert set(client.list("home/wdc3/")) >= set(NAMES)
    assert int(client.info(f"home/wdc3/{NAMES[1]}")["size"]) == len(NAMES[1].encode())
    client.move(f"home/wdc3/{NAMES[2]}", "home/wdc3/moved.txt")
    client.copy("home/wdc3/moved.txt", "home/wdc3/copy.txt")
    assert client.check("home/wdc3/copy.txt") and not client.check(f"home/wdc3/{NAMES[2]}")
    path, digest = big_file
    client.upload_sync(remote_path="home/wdc3/big.bin", local_path=str(path))
    client.download_sync(remote_path="home/wdc3/big.bin", local_path=str(tmp_path / "b.bin"))
    assert sha(tmp_path / "b.bin") == digest == sha(target.home / "wdc3" / "big.bin")
    client.clean("home/wdc3/")
    assert not (target.home / "wdc3").exists()


# -- rclone, with rclone mount -------------------------------------------------------------------

def _rclone(target: Target) -> tuple[list[str], dict[str, str]]:
    rclone = require_tool("rclone")
    env = {"RCLONE_CONFIG": "/dev/null", "RCLONE_WEBDAV_URL": target.url + "/",
           "RCLONE_WEBDAV_VENDOR": "other"}
    if target.basic:
        obscured = run(rclone, "obscure", target.basic[1]).strip()
        env |= {"RCLONE_WEBDAV_USER": target.basic[0], "RCLONE_WEBDAV_PASS": obscured}
    if target.bearer:
        env["RCLONE_WEBDAV_BEARER_TOKEN"] = target.bearer
    return [rclone], env


def test_rclone_copy_sync_check(target: Target, big_file: tuple[Path, str],
                                tmp_path: Path) -> None:
    rclone, env = _rclone(target)
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    for name in NAMES:
        (source / "sub" / name).write_text(name)
    shutil.copy(big_file[0], source / "big.bin")
    run(*rclone, "copy", str(source), ":webdav:home/rc", env=env)
    assert sha(target.home / "rc" / "big.bin") == big_file[1]
    owned(target, target.home / "rc" / "big.bin")
    run(*rclone, "check", str(source), ":webdav:home/rc", env=env)
    (source / "sub" / NAMES[0]).unlink()
    (source / "new.txt").write_text("new")
    run(*rclone, "sync", str(source), ":webdav:home/rc", env=env)
    listed = json.loads(run(*rclone, "lsjson", "-R", ":webdav:home/rc", env=env))
    assert {item["Path"] for item in listed if not item["IsDir"]} == {
        "big.bin", "new.txt", f"sub/{NAMES[1]}", f"sub/{NAMES[2]}"}
    run(*rclone, "moveto", ":webdav:home/rc/new.txt", ":webdav:home/rc/sub/renamed.txt",
        env=env)
    run(*rclone, "copyto", ":webdav:home/rc/sub/renamed.txt", ":webdav:home/rc/copy.txt",
        env=env)
    assert run(*rclone, "cat", "--offset", "1", "--count", "2", ":webdav:home/rc/copy.txt",
               env=env) == "ew"
    run(*rclone, "purge", ":webdav:home/rc", env=env)
    assert not (target.home / "rc").exists()


def test_rclone_mount(target: Target, tmp_path: Path) -> None:
    """What the demo banner suggests: the home folder as a local folder (FUSE)."""
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount")
    if fusermount is None or not Path("/dev/fuse").exists():
        message = "rclone mount needs fuse3 and /dev/fuse (setup installs fuse3)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    rclone, env = _rclone(target)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    log = tmp_path / "mount.log"
    mount = subprocess.Popen([*rclone, "mount", ":webdav:home/", str(mountpoint),
                              "--vfs-cache-mode", "writes", "--dir-cache-time", "1s",
                              "--log-file", str(log)], env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mountpoint):
            assert mount.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        (mountpoint / "via-mount").mkdir()
        (mountpoint / "via-mount" / NAMES[0]).write_text("written through FUSE")
        (target.home / "from-server.txt").write_text("seen through FUSE")
        os.sync()
        deadline = time.monotonic() + 30
        while not (target.home / "via-mount" / NAMES[0]).exists():
            assert time.monotonic() < deadline, "the write did not reach the server"
            time.sleep(0.2)
        assert (target.home / "via-mount" / NAMES[0]).read_text() == "written through FUSE"
        deadline = time.monotonic() + 10
        while not (mountpoint / "from-server.txt").exists():
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert (mountpoint / "from-server.txt").read_text() == "seen through FUSE"
    finally:
        subprocess.run([fusermount, "-u", str(mountpoint)], capture_output=True, check=False)
        try:
            mount.wait(15)
        except subprocess.TimeoutExpired:
            mount.kill()
            mount.wait()


# -- cadaver, davix, curl ------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["direct", "gateway-key"], indirect=True)
def test_cadaver(target: Target, tmp_path: Path) -> None:
    """cadaver speaks Basic and Digest, not tokens: the access key."""
    cadaver = require_tool("cadaver")
    (tmp_path / "local.txt").write_text("from cadaver\n")
    if target.basic:  # credentials from ~/.netrc, as cadaver users keep them
        (tmp_path / ".netrc").write_text(f"machine 127.0.0.1 login {target.basic[0]} "
                                         f"password {target.basic[1]}\n")
        (tmp_path / ".netrc").chmod(0o600)
    script = (f"mkcol cad\ncd cad\nlcd {tmp_path}\nput local.txt\nmove local.txt moved.txt\n"
              "copy moved.txt copied.txt\nls\nget copied.txt back.txt\ndelete moved.txt\n"
              "cd ..\nquit\n")
    out = run(cadaver, f"{target.url}/home/", stdin=script, env={"HOME": str(tmp_path)})
    assert "copied.txt" in out and "moved.txt" in out
    assert (tmp_path / "back.txt").read_text() == "from cadaver\n"
    assert sorted(p.name for p in (target.home / "cad").iterdir()) == ["copied.txt"]


def test_davix(target: Target, big_file: tuple[Path, str], tmp_path: Path) -> None:
    """davix (gfal2's HTTP library). davix 0.8.4 never answers a Basic challenge — checked
    against a bare server over http and https, with --userlogin/--userpass — so an access key
    goes as a header up front, as davix users pass passwords (a token likewise)."""
    auth: list[str] = []
    if target.basic:
        pair = base64.b64encode(":".join(target.basic).encode()).decode()
        auth = ["-H", f"Authorization: Basic {pair}"]
    if target.bearer:
        auth = ["-H", f"Authorization: Bearer {target.bearer}"]
    put, get = require_tool("davix-put"), require_tool("davix-get")
    mkdir, ls = require_tool("davix-mkdir"), require_tool("davix-ls")
    mv, rm = require_tool("davix-mv"), require_tool("davix-rm")
    run(mkdir, *auth, f"{target.url}/home/dvx")
    path, digest = big_file
    run(put, *auth, str(path), f"{target.url}/home/dvx/big.bin")
    run(get, *auth, f"{target.url}/home/dvx/big.bin", str(tmp_path / "big.bin"))
    assert sha(tmp_path / "big.bin") == digest
    # davix-mv 0.8.4 exits 255 even when the server answered 201/204 (seen against a bare
    # HTTP server too): its effect is checked instead of its exit status.
    subprocess.run([mv, *auth, f"{target.url}/home/dvx/big.bin",
                    f"{target.url}/home/dvx/renamed.bin"], capture_output=True, timeout=60)
    listed = run(ls, *auth, "-l", f"{target.url}/home/dvx/")
    assert "renamed.bin" in listed and "big.bin" not in listed
    run(rm, *auth, f"{target.url}/home/dvx")
    assert not (target.home / "dvx").exists()


GFAL2_SESSION = r"""
import gfal2, hashlib, json, sys, zlib
base, kind, credential, big, folder = sys.argv[1:6]
ctx = gfal2.creat_context()
if kind == "bearer":
    ctx.cred_set(base, ctx.cred_new("BEARER", credential))
elif kind == "basic":  # davix sends no Basic answer to a challenge: the header up front
    ctx.set_opt_string_list("HTTP PLUGIN", "HEADERS", ["Authorization: Basic " + credential])
home = base + "/home/gfal"
done = {"mkdir": ctx.mkdir_rec(home + "/sub", 0o755)}
copy = ctx.transfer_parameters()
copy.set_checksum(gfal2.checksum_mode.both, "ADLER32", "")  # gfal-copy -K ADLER32
copy.timeout = 120
done["up"] = ctx.filecopy(copy, "file://" + big, home + "/big.bin")
data = open(big, "rb").read()
done["size"] = ctx.stat(home + "/big.bin").st_size
if kind == "bearer":  # a context of its own, the token only in BEARER_TOKEN (gfal-copy's way)
    done["size_via_env"] = gfal2.creat_context().stat(home + "/big.bin").st_size
done["adler32"] = ctx.checksum(home + "/big.bin", "ADLER32")
done["adler32_local"] = "%08x" % zlib.adler32(data)
done["md5"] = ctx.checksum(home + "/big.bin", "MD5")
done["md5_local"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
done["rename"] = ctx.rename(home + "/big.bin", home + "/sub/renamed.bin")
done["listing"] = sorted(ctx.listdir(home + "/sub"))
down = ctx.transfer_parameters()
down.set_checksum(gfal2.checksum_mode.both, "MD5", "")
done["down"] = ctx.filecopy(down, home + "/sub/renamed.bin", "file://" + folder + "/back.bin")
done["unlink"] = ctx.unlink(home + "/sub/renamed.bin")
done["rmdir"] = [ctx.rmdir(home + "/sub"), ctx.rmdir(home)]
print(json.dumps(done))
"""


def test_gfal2_copies_with_checksums(target: Target, big_file: tuple[Path, str],
                                     tmp_path: Path) -> None:
    """gfal2 (what gfal-copy, FTS and Rucio use), its HTTP plugin over davix: each copy is
    verified with the storage's checksum (``Want-Digest``), as grid transfers are."""
    python = require_debian_module("gfal2", "python3-gfal2 gfal2-plugin-http")
    kind, credential = "none", ""
    if target.basic:
        kind, credential = "basic", base64.b64encode(":".join(target.basic).encode()).decode()
    if target.bearer:
        kind, credential = "bearer", target.bearer
    path, digest = big_file
    done = json.loads(run(python, "-c", GFAL2_SESSION, target.url, kind, credential,
                          str(path), str(tmp_path),
                          env={"BEARER_TOKEN": target.bearer} if target.bearer else None))
    assert done["up"] == 0 and done["down"] == 0 and done["size"] == BIG
    if target.bearer:
        assert done["size_via_env"] == BIG
    assert done["adler32"] == done["adler32_local"] and done["md5"] == done["md5_local"]
    assert done["listing"] == ["renamed.bin"]
    assert sha(tmp_path / "back.bin") == digest
    assert not (target.home / "gfal").exists()


def test_curl(target: Target, tmp_path: Path) -> None:
    curl = require_tool("curl")
    auth = ["-u", ":".join(target.basic)] if target.basic else \
        ["-H", f"Authorization: Bearer {target.bearer}"] if target.bearer else []
    base = [curl, "-sS", "-f", *auth]
    run(*base, "-X", "MKCOL", f"{target.url}/home/crl/")
    (tmp_path / "up.txt").write_text("0123456789")
    run(*base, "-T", str(tmp_path / "up.txt"), f"{target.url}/home/crl/up%20file.txt")
    assert run(*base, "-r", "2-4", f"{target.url}/home/crl/up%20file.txt") == "234"
    listing = run(*base, "-X", "PROPFIND", "-H", "Depth: 1", f"{target.url}/home/crl/")
    assert "up%20file.txt" in listing
    run(*base, "-X", "MOVE", "-H", f"Destination: {target.url}/home/crl/moved.txt",
        f"{target.url}/home/crl/up%20file.txt")
    run(*base, "-X", "COPY", "-H", f"Destination: {target.url}/home/crl/copy.txt",
        f"{target.url}/home/crl/moved.txt")
    run(*base, "-X", "DELETE", f"{target.url}/home/crl/moved.txt")
    assert sorted(p.name for p in (target.home / "crl").iterdir()) == ["copy.txt"]
    assert httpx.get(f"{target.url}/home/crl/copy.txt", auth=target.basic,  # type: ignore[arg-type]
                     headers=target.headers()).text == "0123456789"
