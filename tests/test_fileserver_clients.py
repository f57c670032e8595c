"""Real clients against the file server: rclone, cadaver, davix, curl and a browser's GET."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from harness.fileserver import Fileserver, hand_over, open_folder, serving_uid
from harness.tools import require_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Fileserver, Path]]:
    with open_folder() as folder:
        for name in ("home", "xray", "data"):
            (folder / name).mkdir()
        (folder / "data" / "beamtime.h5").write_bytes(os.urandom(300_000))
        mounts = {"home": folder / "home", "group-xray": folder / "xray", "data": folder / "data"}
        with Fileserver(mounts, read_only=("data",)) as server:
            yield server, folder


def run(*command: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120,
                            cwd=cwd, check=False)
    assert result.returncode == 0, f"{command[0]} failed: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rclone_copies_up_and_down(served: tuple[Fileserver, Path], tmp_path: Path) -> None:
    server, folder = served
    rclone = require_tool("rclone")
    base = [rclone, "--config", "/dev/null", "--webdav-url", server.url, "--webdav-vendor",
            "other"]
    source = tmp_path / "up"
    (source / "nested").mkdir(parents=True)
    (source / "big.bin").write_bytes(os.urandom(5_000_000))
    (source / "nested" / "ünïcode & spaces.txt").write_text("hello\n")
    run(*base, "copy", str(source), ":webdav:home/run1")
    listed = json.loads(subprocess.run([*base, "lsjson", "-R", ":webdav:home/run1"],
                                       capture_output=True, text=True, check=True).stdout)
    sizes = {item["Path"]: item["Size"] for item in listed if not item["IsDir"]}
    assert sizes == {"big.bin": 5_000_000, "nested/ünïcode & spaces.txt": 6}
    on_disk = folder / "home" / "run1" / "big.bin"
    assert digest(on_disk) == digest(source / "big.bin")
    assert on_disk.stat().st_uid == serving_uid()
    down = tmp_path / "down"
    run(*base, "copy", ":webdav:home/run1", str(down))
    assert digest(down / "big.bin") == digest(source / "big.bin")
    assert (down / "nested" / "ünïcode & spaces.txt").read_text() == "hello\n"
    run(*base, "check", "--size-only", str(source), ":webdav:home/run1")
    run(*base, "moveto", ":webdav:home/run1/big.bin", ":webdav:groups/xray/big.bin")
    assert (folder / "xray" / "big.bin").stat().st_size == 5_000_000
    assert not on_disk.exists()
    # rclone asks for RFC 4331 quota at the root of --webdav-url.
    about = json.loads(subprocess.run(
        [rclone, "--config", "/dev/null", "--webdav-url", f"{server.url}/home", "about",
         "--json", ":webdav:"], capture_output=True, text=True, check=True).stdout)
    assert about["free"] > 0 and about["used"] > 0
    denied = subprocess.run([*base, "copy", str(source / "nested"), ":webdav:data/x"],
                            capture_output=True, text=True, check=False)
    assert denied.returncode != 0 and "403" in denied.stderr


def test_cadaver_session(served: tuple[Fileserver, Path], tmp_path: Path) -> None:
    server, folder = served
    cadaver = require_tool("cadaver")
    (tmp_path / "notes.txt").write_text("measured at 12 keV\n")
    script = "\n".join([
        "mkcol shared", "cd shared", "put notes.txt", "propset notes.txt energy 12keV",
        "propget notes.txt energy", "lock notes.txt", "discover notes.txt", "unlock notes.txt",
        "copy notes.txt copy.txt", "move copy.txt moved.txt", "ls", "get moved.txt back.txt",
        "rm notes.txt", "ls", "quit", ""])
    output = run(cadaver, f"{server.url}/home/", stdin=script, cwd=tmp_path)
    assert "Creating `shared': succeeded" in output
    assert "Uploading notes.txt" in output and "succeeded" in output
    assert "energy = 12keV" in output or "Value of energy is: 12keV" in output
    assert "Locking `notes.txt': succeeded" in output
    assert "Unlocking `notes.txt': succeeded" in output
    assert "Copying `" in output and "Moving `" in output
    assert (tmp_path / "back.txt").read_text() == "measured at 12 keV\n"
    assert sorted(p.name for p in (folder / "home" / "shared").iterdir()) == ["moved.txt"]


def test_davix_put_ls_get(served: tuple[Fileserver, Path], tmp_path: Path) -> None:
    server, folder = served
    davix_put, davix_ls, davix_get = (require_tool(t) for t in
                                      ("davix-put", "davix-ls", "davix-get"))
    payload = tmp_path / "scan_0001.cbf"
    payload.write_bytes(os.urandom(2_000_000))
    run(davix_put, str(payload), f"{server.url}/groups/xray/scan_0001.cbf")
    assert digest(folder / "xray" / "scan_0001.cbf") == digest(payload)
    listing = run(davix_ls, "-l", f"{server.url}/groups/xray/")
    assert "scan_0001.cbf" in listing and "2000000" in listing
    run(davix_get, f"{server.url}/groups/xray/scan_0001.cbf", str(tmp_path / "back.cbf"))
    assert digest(tmp_path / "back.cbf") == digest(payload)
    run(davix_get, f"{server.url}/data/beamtime.h5", str(tmp_path / "beamtime.h5"))
    assert digest(tmp_path / "beamtime.h5") == digest(folder / "data" / "beamtime.h5")


def test_curl_put_range_propfind_copy(served: tuple[Fileserver, Path], tmp_path: Path) -> None:
    server, folder = served
    curl = require_tool("curl")
    (tmp_path / "a.txt").write_text("0123456789")
    code = run(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(tmp_path / "a.txt"),
               f"{server.url}/home/a.txt")
    assert code == "201"
    assert run(curl, "-s", "-r", "2-5", f"{server.url}/home/a.txt") == "2345"
    listing = run(curl, "-s", "-X", "PROPFIND", "-H", "Depth: 1", f"{server.url}/home/")
    assert "<D:href>/home/a.txt</D:href>" in listing
    assert "<D:getcontentlength>10</D:getcontentlength>" in listing
    code = run(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "COPY", "-H",
               f"Destination: {server.url}/groups/xray/a.txt", f"{server.url}/home/a.txt")
    assert code == "201"
    assert (folder / "xray" / "a.txt").read_text() == "0123456789"


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value or "" for name, value in attrs if name == "href")
        self.scripts += tag in ("script", "img")


def test_browser_listing_and_download(served: tuple[Fileserver, Path]) -> None:
    server, folder = served
    listing = folder / "home" / "listing"
    listing.mkdir()
    (listing / "sub").mkdir()
    (listing / "report.pdf").write_bytes(b"%PDF-1.4\n")
    (listing / "<img src=x onerror=alert(1)>.txt").write_text("x")
    hand_over(listing)
    page = httpx.get(f"{server.url}/home/listing/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    parser = Links()
    parser.feed(page.text)
    assert parser.scripts == 0
    assert parser.links == ["../", "sub/", "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt",
                            "report.pdf"]
    assert httpx.get(f"{server.url}/home/listing").status_code == 301
    root = httpx.get(f"{server.url}/")
    parser = Links()
    parser.feed(root.text)
    assert parser.links == ["data/", "groups/", "home/"]
    download = httpx.get(f"{server.url}/home/listing/report.pdf")
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == \
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.content == b"%PDF-1.4\n"
