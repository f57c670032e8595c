"""Access keys: an id and a secret a user creates after an OIDC login, for WebDAV clients
that only speak HTTP Basic (davfs2, Windows, Finder, rclone without a token command).

Like S3 credentials: the key id names the key, the secret is shown once and stored only as an
argon2id hash, a key carries the identity of the login that created it, may expire, and is
revoked by deleting it. Stores: SQLite for one gateway, Kubernetes Secrets for replicas.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.identity.claims import Identity
from services.kubepie.gateway.sqlite_file import SqliteFile

KEY_ID_PREFIX = "KP"
MAX_KEYS_PER_USER = 20
# OWASP's argon2id minimum (19 MiB, 2 passes): ~20 ms here, paid once per key and cache time.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class CredentialsRejected(Exception):
    """Unknown key, wrong secret or expired; the message is safe to show."""


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    identity: Identity
    secret_hash: str
    label: str
    created: float
    expires: float | None = None

    @property
    def username(self) -> str:
        return self.identity.username

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def to_record(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "identity": self.identity.as_claims(),
                "secret_hash": self.secret_hash, "label": self.label,
                "created": self.created, "expires": self.expires}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AccessKey:
        return cls(str(record["key_id"]), Identity.from_claims(record["identity"]),
                   str(record["secret_hash"]), str(record.get("label", "")),
                   float(record["created"]),
                   None if record.get("expires") is None else float(record["expires"]))


class KeyStore(Protocol):
    async def add(self, key: AccessKey) -> None: ...
    async def get(self, key_id: str) -> AccessKey | None: ...
    async def for_user(self, username: str) -> list[AccessKey]: ...
    async def remove(self, key_id: str) -> bool: ...
    def close(self) -> None: ...


def new_secret() -> str:
    """40 URL-safe characters (240 random bits) that never start with ``-`` or ``_``: a
    secret pasted after a command (``rclone obscure <secret>``) must not read as a flag."""
    while True:
        secret = secrets.token_urlsafe(30)
        if secret[0].isalnum():
            return secret


def new_key_id() -> str:
    return KEY_ID_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()


def valid_key_id(text: str) -> bool:
    return len(text) == 18 and text.startswith(KEY_ID_PREFIX) and text[2:].isalnum() \
        and text[2:].isupper()


class AccessKeys:
    """Creates keys and checks Basic credentials against the store."""

    def __init__(self, store: KeyStore, *, max_lifetime: float | None,
                 cache_seconds: float = 300.0) -> None:
        self.store = store
        self._max_lifetime = max_lifetime
        self._cache_seconds = cache_seconds
        self._verified: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._hashing = asyncio.Semaphore(2)  # bounds the CPU a flood of wrong secrets costs

    async def create(self, identity: Identity, label: str,
                     lifetime: float | None) -> tuple[AccessKey, str]:
        """A new key and its secret (the only time the secret exists in clear)."""
        if self._max_lifetime is not None:
            lifetime = min(lifetime or self._max_lifetime, self._max_lifetime)
        existing = await self.store.for_user(identity.username)
        if len(existing) >= MAX_KEYS_PER_USER:
            raise ValueError(f"you have {len(existing)} keys, the most allowed; revoke one")
        secret = new_secret()
        async with self._hashing:
            secret_hash = await asyncio.to_thread(HASHER.hash, secret)
        now = time.time()
        key = AccessKey(new_key_id(), identity, secret_hash, label.strip()[:80] or "key", now,
                        now + lifetime if lifetime else None)
        await self.store.add(key)
        return key, secret

    async def authenticate(self, key_id: str, secret: str) -> Identity:
        return (await self.verify(key_id, secret)).identity

    async def verify(self, key_id: str, secret: str) -> AccessKey:
        """The key these credentials open (with its expiry), or CredentialsRejected."""
        if not valid_key_id(key_id):
            raise CredentialsRejected("unknown access key")
        key = await self.store.get(key_id)
        now = time.time()
        if key is None:
            raise CredentialsRejected("unknown access key")
        if key.expired(now):
            raise CredentialsRejected("the access key has expired")
        # The store is read every time (a revoked key stops at once); only the slow hash
        # check is remembered, for this exact key, hash and secret.
        cache_key = (key_id, key.secret_hash, hashlib.sha256(secret.encode()).hexdigest())
        if self._verified.get(cache_key, 0.0) > now:
            return key
        async with self._hashing:
            ok = await asyncio.to_thread(_verify, key.secret_hash, secret)
        if not ok:
            raise CredentialsRejected("wrong secret for this access key")
        self._verified[cache_key] = now + self._cache_seconds
        while len(self._verified) > 10_000:
            self._verified.popitem(last=False)
        return key

    async def revoke(self, key_id: str, username: str) -> bool:
        key = await self.store.get(key_id) if valid_key_id(key_id) else None
        if key is None or key.username != username:
            return False
        return await self.store.remove(key_id)


def _verify(secret_hash: str, secret: str) -> bool:
    try:
        return HASHER.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


class SqliteKeyStore:
    """One SQLite file (mode 0600); calls run in a thread, one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, (
            "CREATE TABLE IF NOT EXISTS access_keys (key_id TEXT PRIMARY KEY, "
            "username TEXT NOT NULL, record TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS by_user ON access_keys (username)"))
        self._run = self._file.rows

    async def add(self, key: AccessKey) -> None:
        await asyncio.to_thread(self._run, "INSERT INTO access_keys VALUES (?, ?, ?)",
                                key.key_id, key.username, json.dumps(key.to_record()))

    async def get(self, key_id: str) -> AccessKey | None:
        rows = await asyncio.to_thread(self._run, "SELECT record FROM access_keys "
                                       "WHERE key_id = ?", key_id)
        return AccessKey.from_record(json.loads(rows[0][0])) if rows else None

    async def for_user(self, username: str) -> list[AccessKey]:
        rows = await asyncio.to_thread(self._run, "SELECT record FROM access_keys WHERE "
                                       "username = ? ORDER BY key_id", username)
        return sorted((AccessKey.from_record(json.loads(r[0])) for r in rows),
                      key=lambda k: k.created)

    async def remove(self, key_id: str) -> bool:
        return await asyncio.to_thread(
            self._file.changed, "DELETE FROM access_keys WHERE key_id = ?", key_id) > 0

    def close(self) -> None:
        self._file.close()
