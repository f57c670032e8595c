"""Claims → identity, access keys and the signed pod identity: each rule tried to break."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from services.identity.claims import ClaimMapping, Identity, IdentityRefused
from services.kubepie.gateway.accesskeys import AccessKeys, CredentialsRejected, SqliteKeyStore
from services.kubepie.gateway.login import safe_next
from services.kubepie.pod_identity import generate_key, sign, verify

MAPPING = ClaimMapping(group_gids={"xray": 5000, "bio": 5001})
ALICE = {"preferred_username": "alice", "uidNumber": 1001, "gidNumber": 1001,
         "groups": ["/xray", "other"]}


def test_claims_map_to_ids_and_mapped_groups_only() -> None:
    identity = MAPPING.identity(ALICE)
    assert identity == Identity("alice", 1001, 1001, (5000,), ("xray",))
    assert MAPPING.identity({**ALICE, "uidNumber": "1001"}).uid == 1001  # LDAP strings


@pytest.mark.parametrize(("change", "reason"), [
    ({"preferred_username": None}, "preferred_username"),
    ({"preferred_username": "../etc"}, "not a valid user name"),
    ({"preferred_username": "Alice Smith"}, "not a valid user name"),
    ({"uidNumber": None}, "'uidNumber' is missing"),
    ({"uidNumber": 0}, "root"),
    ({"gidNumber": 0}, "root"),
    ({"uidNumber": "0"}, "root"),
    ({"uidNumber": 999}, "outside the accepted range"),
    ({"uidNumber": 2**31}, "outside the accepted range"),
    ({"uidNumber": -5}, "outside the accepted range"),
    ({"uidNumber": True}, "not a number"),
    ({"uidNumber": 1001.5}, "not a number"),
    ({"gidNumber": "12a"}, "not a number"),
    ({"groups": [1, 2]}, "neither a list of names"),
    ({"groups": {"xray": True}}, "neither a list of names"),
])
def test_doubtful_claims_are_refused(change: dict[str, Any], reason: str) -> None:
    claims = {k: v for k, v in {**ALICE, **change}.items() if v is not None}
    with pytest.raises(IdentityRefused, match=reason):
        MAPPING.identity(claims)


@pytest.mark.parametrize("groups", [
    ["xray", "bio"], "xray,bio", "xray, bio", "xray bio", " /xray\t/bio ", "bio,xray,other",
])
def test_groups_as_a_list_or_one_separated_string(groups: Any) -> None:
    """glewlwyd (and LDAP-backed providers) join multi-valued claims into one string."""
    identity = MAPPING.identity({**ALICE, "groups": groups})
    assert (identity.groups, identity.gids) == (("bio", "xray"), (5000, 5001))


def test_no_groups_claim_or_an_empty_one_gives_no_groups() -> None:
    for claims in ({k: v for k, v in ALICE.items() if k != "groups"}, {**ALICE, "groups": ""},
                   {**ALICE, "groups": None}, {**ALICE, "groups": []}):
        assert MAPPING.identity(claims).gids == ()


def test_a_group_mapped_to_gid_0_is_refused() -> None:
    with pytest.raises(IdentityRefused, match="root"):
        ClaimMapping(group_gids={"wheel": 0}).identity({**ALICE, "groups": ["wheel"]})
    with pytest.raises(IdentityRefused, match="root"):  # as a string too
        ClaimMapping(group_gids={"wheel": 0}).identity({**ALICE, "groups": "users,wheel"})


@pytest.mark.parametrize(("value", "expected"), [
    ("/home/", "/home/"), ("//evil.example/", "/"), ("https://evil.example/", "/"),
    ("/\\evil.example", "/"), ("home", "/")])
def test_login_redirects_stay_on_the_gateway(value: str, expected: str) -> None:
    assert safe_next(value) == expected


async def test_access_keys_hash_expire_and_revoke(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "keys.sqlite")
    keys = AccessKeys(store, max_lifetime=3600)
    identity = MAPPING.identity(ALICE)
    key, secret = await keys.create(identity, "laptop", None)
    assert key.expires is not None and key.expires - key.created == pytest.approx(3600, abs=1)
    assert (tmp_path / "keys.sqlite").stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(tmp_path / "keys.sqlite") as db:
        raw = repr(db.execute("SELECT * FROM access_keys").fetchall())
    assert secret not in raw and "$argon2id$" in raw  # only the slow hash
    assert await keys.authenticate(key.key_id, secret) == identity
    assert await keys.authenticate(key.key_id, secret) == identity  # cached check
    for key_id, wrong in ((key.key_id, secret + "x"), (key.key_id, ""),
                          ("KPAAAAAAAAAAAAAAAA", secret), ("alice", secret)):
        with pytest.raises(CredentialsRejected):
            await keys.authenticate(key_id, wrong)
    assert not await keys.revoke(key.key_id, "bob")  # not bob's to revoke
    assert await keys.revoke(key.key_id, "alice")
    with pytest.raises(CredentialsRejected, match="unknown"):
        await keys.authenticate(key.key_id, secret)  # at once, despite the cache
    short = AccessKeys(store, max_lifetime=None)
    expired, expired_secret = await short.create(identity, "old", 1e-6)
    with pytest.raises(CredentialsRejected, match="expired"):
        await short.authenticate(expired.key_id, expired_secret)


def test_pod_identity_is_bound_to_signature_pod_and_time() -> None:
    private, public = generate_key()
    key, check = ECKey.import_key(private), ECKey.import_key(public)
    identity = Identity("alice", 1001, 1001, (5000,), ("xray",))
    token = sign(identity, "kubepie-alice-1", key, now=1_000_000)
    assert verify(token, "kubepie-alice-1", check, now=1_000_100) == identity
    with pytest.raises(IdentityRefused, match="pod"):
        verify(token, "kubepie-mallory-1", check, now=1_000_100)
    with pytest.raises(IdentityRefused, match="expired"):
        verify(token, "kubepie-alice-1", check, now=1_000_000 + 3600)
    other = ECKey.import_key(generate_key()[0])
    with pytest.raises(IdentityRefused):
        verify(sign(identity, "kubepie-alice-1", other), "kubepie-alice-1", check)


def test_access_key_secrets_never_start_like_a_flag() -> None:
    """rclone obscure -abc… failed when a secret began with '-': 1 in 32 keys."""
    from services.kubepie.gateway.accesskeys import new_secret

    secrets_made = [new_secret() for _ in range(2000)]
    assert all(s[0].isalnum() and len(s) == 40 for s in secrets_made)
    assert len(set(secrets_made)) == 2000


def test_authorize_answers_are_reused_at_most_until_the_credential_ends() -> None:
    from services.kubepie.gateway.app import _reuse_seconds

    now = time.time()
    assert _reuse_seconds(5.0, None) == 5  # no known end: the setting
    assert _reuse_seconds(5.0, now + 3600) == 5
    assert _reuse_seconds(5.0, now + 2.7) == 2  # whole seconds, rounded down
    assert _reuse_seconds(5.0, now + 0.5) == 0  # under a second left: ask every time
    assert _reuse_seconds(5.0, now - 10) == 0
    assert _reuse_seconds(0.0, now + 3600) == 0  # turned off
