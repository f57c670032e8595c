"""One identity for the suite: auth_state → identity, passwd/group entries, the storage
definition — each with the cases that must be refused."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from services.hub.config import Sidecars
from services.hub.user_identity import NoIdentity, claims_from_auth_state, identity_of
from services.identity.claims import ClaimMapping, Identity
from services.identity.nss import MERGE_SCRIPT, entries_for
from services.identity.settings import mapping_from
from services.storage.definition import StorageDefinition

MAPPING = ClaimMapping(group_gids={"xray": 5000, "bio": 5001})


def id_token(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_claims_come_from_the_id_token_and_userinfo() -> None:
    state = {"access_token": "a", "oauth_user": {"sub": "s", "preferred_username": "alice",
                                                 "uidNumber": 1001, "groups": ["xray"]},
             "id_token": id_token({"sub": "s", "gidNumber": "1001", "uidNumber": 2101})}
    claims = claims_from_auth_state(state)
    assert claims["uidNumber"] == 2101  # the id token wins where both say something
    assert identity_of(state, MAPPING) == Identity("alice", 2101, 1001, (5000,), ("xray",))


@pytest.mark.parametrize(("state", "reason"), [
    (None, "auth_state is empty"),
    ({}, "auth_state is empty"),
    ({"access_token": "opaque"}, "no id token, no userinfo"),
    ({"oauth_user": {"preferred_username": "carol"}}, "'uidNumber' is missing"),
    ({"oauth_user": {"preferred_username": "eve", "uidNumber": 0, "gidNumber": 1001}},
     "root"),
    ({"oauth_user": {"preferred_username": "eve", "uidNumber": 1001, "gidNumber": 1001,
                     "groups": "wheel"}}, None),
    ({"oauth_user": {"preferred_username": "bob", "uidNumber": 1002, "gidNumber": 500}},
     "outside the accepted range"),
])
def test_unusable_claims_refuse_the_spawn_with_a_reason(state: dict[str, Any] | None,
                                                        reason: str | None) -> None:
    if reason is None:  # an unmapped group is not an error: it is just not a gid
        assert identity_of(state, MAPPING).gids == ()
        return
    with pytest.raises(NoIdentity, match=reason):
        identity_of(state, MAPPING)


def test_hub_settings_are_the_gateways_settings() -> None:
    config = Sidecars(group_gids="xray=5000,bio=5001", id_range="2000-60000",
                      uid_claim="uid")
    mapping = config.claim_mapping()
    assert mapping.group_gids == {"xray": 5000, "bio": 5001}
    assert (mapping.min_id, mapping.max_id, mapping.uid_claim) == (2000, 60000, "uid")
    assert Sidecars(group_gids={"/xray": 5000}).claim_mapping().group_gids == {"xray": 5000}
    for bad, message in ((dict(group_gids="xray"), "c.Sidecars.GROUP_GIDS"),
                         (dict(id_range="0-10"), "never 0"),
                         (dict(group_gids="xray=5", id_range="1000-2000"), "outside")):
        with pytest.raises(ValueError, match=message):
            Sidecars(**bad).claim_mapping()
    with pytest.raises(ValueError, match="KUBEPIE_GROUP_GIDS"):
        mapping_from("u", "a", "b", "c", "x", "1000-2000", prefix="KUBEPIE_")


def test_passwd_and_group_lines() -> None:
    alice = MAPPING.identity({"preferred_username": "alice", "uidNumber": 2101,
                              "gidNumber": 2101, "groups": "xray bio"})
    entries = entries_for(alice, MAPPING.group_gids, "/home/alice")
    assert entries.passwd == "alice:x:2101:2101:alice:/home/alice:/bin/bash"
    assert entries.group.splitlines() == ["alice:x:2101:", "xray:x:5000:alice",
                                          "bio:x:5001:alice"]
    # A mapped group that *is* the primary group names it.
    staff = MAPPING.identity({"preferred_username": "bob", "uidNumber": 2102,
                              "gidNumber": 5000, "groups": ["xray"]})
    assert entries_for(staff, MAPPING.group_gids, "/h").group == "xray:x:5000:"


def test_the_merge_script_keeps_the_images_accounts_and_replaces_clashes(
        tmp_path: Path) -> None:
    """Run by /bin/sh (dash here, busybox sh in small images) on an image's files."""
    etc, out = tmp_path / "etc", tmp_path / "out"
    etc.mkdir()
    out.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                "jovyan:x:1000:100::/home/jovyan:/bin/bash\n"
                                "alice:x:999:999::/old:/bin/sh\n"
                                "olduid:x:2101:100::/x:/bin/sh")  # no final newline
    (etc / "group").write_text("root:x:0:\nusers:x:100:\nxray:x:4000:\nclash:x:5000:\n")
    alice = MAPPING.identity({"preferred_username": "alice", "uidNumber": 2101,
                              "gidNumber": 2101, "groups": ["xray"]})
    entries = entries_for(alice, MAPPING.group_gids, "/home/alice")
    env = {**entries.env(alice), "NSS_DIR": str(out), "NSS_ETC": str(etc)}
    subprocess.run(["/bin/sh", "-c", MERGE_SCRIPT], env=env, check=True)
    assert (out / "passwd").read_text().splitlines() == [
        "root:x:0:0:root:/root:/bin/bash", "jovyan:x:1000:100::/home/jovyan:/bin/bash",
        "alice:x:2101:2101:alice:/home/alice:/bin/bash"]
    assert (out / "group").read_text().splitlines() == [
        "root:x:0:", "users:x:100:", "alice:x:2101:", "xray:x:5000:alice"]


STORAGE = {
    "volumes": [{"name": "homes", "hostPath": {"path": "/srv/homes"}},
                {"name": "groups", "nfs": {"server": "nfs", "path": "/groups"}}],
    "mounts": [{"name": "home", "volume": "homes", "subPath": "{username}"},
               {"name": "scratch", "volume": "homes", "subPath": "scratch/{uid}",
                "path": "/scratch"}],
    "groupMounts": {"volume": "groups", "subPath": "{group}", "readOnly": True},
}


def test_the_storage_definition_gives_each_side_the_same_folders() -> None:
    storage = StorageDefinition.parse(STORAGE)
    alice = Identity("alice", 2101, 2101, (5000,), ("xray",))
    folders = {f.name: f for f in storage.folders(alice)}
    assert folders["home"].path == "/home" and folders["home"].home  # named home: $HOME
    assert folders["scratch"].sub_path == "scratch/2101" and folders["scratch"].path == \
        "/scratch"
    assert folders["group-xray"].path == "/groups/xray" and folders["group-xray"].read_only
    assert storage.local_folder(folders["home"]) == "/srv/homes/alice"
    with pytest.raises(ValueError, match="not a hostPath volume"):
        storage.local_folder(folders["group-xray"])


@pytest.mark.parametrize(("change", "message"), [
    ({"mounts": [{"name": "home", "volume": "nope"}]}, "names no volume"),
    ({"mounts": [{"name": "Home", "volume": "homes"}]}, "needs a name"),
    ({"mounts": [{"name": "home", "volume": "homes", "subPath": "../{username}"}]}, "'..'"),
    ({"mounts": [{"name": "home", "volume": "homes", "subPath": "{user}"}]},
     "unknown field {user}"),
    ({"mounts": [{"name": "home", "volume": "homes", "path": "relative"}]}, "absolute"),
    ({"mounts": [{"name": "home", "volume": "homes", "owner": "x"}]}, "unknown key 'owner'"),
    ({"mounts": [{"name": "a", "volume": "homes", "home": True},
                 {"name": "b", "volume": "homes", "home": True}]}, "only one mount"),
    ({"mounts": [], "groupMounts": None}, "at least one mount"),
    ({"colour": "red"}, "unknown key 'colour'"),
])
def test_bad_storage_definitions_are_refused_with_the_reason(change: dict[str, Any],
                                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StorageDefinition.parse({**STORAGE, **change})
