"""The file server's pure parts: path decoding, mounts, the If header, lock bookkeeping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.kubepie.fileserver.ifheader import BadIfHeader, Condition, parse_if, submitted_tokens
from services.kubepie.fileserver.locks import LockConflict, LockManager
from services.kubepie.fileserver.mounts import (
    BadPath,
    MountTable,
    OutsideMount,
    decode_path,
    href,
    inside,
    parse_mounts,
)


@pytest.mark.parametrize(("raw", "segments"), [
    ("/", ()), ("/home/", ("home",)), ("/home//a.txt", ("home", "a.txt")),
    ("/home/%C3%BC%20x.txt?x=1", ("home", "ü x.txt")), ("/home/a%5cb", ("home", "a\\b")),
    ("/home/..a/b..", ("home", "..a", "b..")),
])
def test_paths_decode_strictly(raw: str, segments: tuple[str, ...]) -> None:
    assert decode_path(raw) == segments


@pytest.mark.parametrize("raw", [
    "/home/..", "/home/%2e%2E", "/home/.", "/a%2fb", "/a%2Fb", "/a%00", "/%c0%ae%c0%ae",
    "/%c0%af", "/%ed%a0%80", "/%ff", "home", "/a#b",
])
def test_bad_paths_are_refused(raw: str) -> None:
    with pytest.raises(BadPath):
        decode_path(raw)


def test_hrefs_are_percent_encoded() -> None:
    assert href(("groups", "x ray", "a#b?.txt")) == "/groups/x%20ray/a%23b%3F.txt"
    assert href(("home",), collection=True) == "/home/"


def test_mounts_map_to_urls(tmp_path: Path) -> None:
    for name in ("home", "xray", "data"):
        (tmp_path / name).mkdir()
    mounts = parse_mounts(f"home={tmp_path}/home, group-xray={tmp_path}/xray,data={tmp_path}/data",
                          frozenset({"data"}))
    assert [m.url for m in mounts] == ["/home/", "/groups/xray/", "/data/"]
    assert [m.read_only for m in mounts] == [False, False, True]
    table = MountTable(mounts)
    target = table.locate(("groups", "xray", "a", "b.txt"))
    assert target is not None and target.path == f"{tmp_path}/xray/a/b.txt"
    groups = table.locate(("groups",))
    assert groups is not None and groups.virtual
    assert table.children_of_virtual(()) == ["data", "groups", "home"]
    assert table.locate(("etc",)) is None


def test_inside_compares_real_paths(tmp_path: Path) -> None:
    (tmp_path / "mount").mkdir()
    (tmp_path / "mount-evil").mkdir()
    os.symlink(tmp_path / "mount-evil", tmp_path / "mount" / "sneaky")
    (mount,) = parse_mounts(f"home={tmp_path}/mount")
    assert inside(f"{tmp_path}/mount/new.txt", mount) == f"{tmp_path}/mount/new.txt"
    with pytest.raises(OutsideMount):  # a prefix match alone ("/mount" < "/mount-evil") is wrong
        inside(f"{tmp_path}/mount/sneaky/x", mount)


def test_if_header_grammar() -> None:
    lists = parse_if('<http://h/home/a> (<opaquelocktoken:1> ["e1"]) (Not <DAV:no-lock>)')
    assert [lst.resource for lst in lists] == ["http://h/home/a", "http://h/home/a"]
    assert lists[0].conditions == (Condition(False, token="opaquelocktoken:1"),
                                   Condition(False, etag='"e1"'))
    assert lists[1].conditions == (Condition(True, token="DAV:no-lock"),)
    assert submitted_tokens(lists) == {"opaquelocktoken:1", "DAV:no-lock"}
    assert parse_if('([W/"x"])')[0].conditions == (Condition(False, etag='W/"x"'),)
    for bad in ("", "()", "(<a>", "(Not)", "<a> (<b>) (<c>) junk", "(<a>) <b> (<c>)",
                "(Not Not <a>)"):
        with pytest.raises(BadIfHeader):
            parse_if(bad)


def test_locks_conflict_cover_and_expire() -> None:
    locks = LockManager(max_timeout=3600)
    shared = locks.lock(("home", "d"), "/home/d/", exclusive=False, infinite=True, owner=None,
                        timeout=60)
    locks.lock(("home", "d"), "/home/d/", exclusive=False, infinite=False, owner=None,
               timeout=60)
    with pytest.raises(LockConflict):
        locks.lock(("home", "d", "f"), "/home/d/f", exclusive=True, infinite=False, owner=None,
                   timeout=60)
    assert shared in locks.covering(("home", "d", "f"))
    assert locks.within(("home",)) and not locks.covering(("home",))
    assert locks.timeout_for("Second-100, Infinite") == 100
    assert locks.timeout_for("Infinite") == 3600
    assert locks.timeout_for("Second-999999") == 3600
    shared.refresh(-1)  # expired
    assert shared not in locks.covering(("home", "d"))
    locks.forget_below(("home",))
    assert locks.within(("home",)) == []
