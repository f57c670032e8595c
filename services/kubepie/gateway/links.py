"""Share links: a read-only URL for one folder or file that expires and can be revoked.

What an S3 presigned URL or a Nextcloud share gives: a batch job (an ARC job fetching its
input), a colleague or a laptop ``curl``s, ``wget``s or ``rclone``s it without an OIDC login.
A link is an unguessable token (256 random bits) in the URL, ``/_kubepie/s/<token>/``; only its
SHA-256 is stored (a token that long needs no slow hash), with the owner's identity, the shared
path, the expiry and a use count. Requests are served by the *owner's* file server as the
owner's uid (the kernel still decides), read-only, never outside the shared folder
(services/kubepie/fileserver/shares.py). The store is read on every request: a revoked link
stops at once (within 5 s on other replicas with Secrets).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from services.identity.claims import Identity
from services.kubepie.fileserver.mounts import BadPath, decode_path, href
from services.kubepie.gateway.sqlite_file import SqliteFile

PREFIX = "/_kubepie/s/"
LINK_ID_PREFIX = "LK"
MAX_LINKS_PER_USER = 100


class LinkRefused(Exception):
    """The link cannot be made; the message is for the user."""


@dataclass(frozen=True)
class ShareLink:
    link_id: str          # public, for listing and revoking
    token_hash: str       # SHA-256 of the token in the URL
    owner: Identity
    path: str             # on the owner's server, as in its URLs: /home/results/
    collection: bool
    label: str
    created: float
    expires: float
    uses: int = 0

    @property
    def name(self) -> str:
        segments = decode_path(self.path)
        return segments[-1] if segments else ""

    def prefix(self, token: str) -> str:
        """Where the link publishes the shared folder (or the file, under its own name)."""
        base = f"{PREFIX}{token}/"
        return base if self.collection else base + quote(self.name, safe="")

    def expired(self, now: float) -> bool:
        return now >= self.expires

    def to_record(self) -> dict[str, Any]:
        return {"link_id": self.link_id, "token_hash": self.token_hash,
                "owner": self.owner.as_claims(), "path": self.path,
                "collection": self.collection, "label": self.label, "created": self.created,
                "expires": self.expires, "uses": self.uses}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ShareLink:
        return cls(str(record["link_id"]), str(record["token_hash"]),
                   Identity.from_claims(record["owner"]), str(record["path"]),
                   bool(record["collection"]), str(record.get("label", "")),
                   float(record["created"]), float(record["expires"]),
                   int(record.get("uses", 0)))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LinkStore(Protocol):
    async def add(self, link: ShareLink) -> None: ...
    async def by_hash(self, digest: str) -> ShareLink | None: ...
    async def for_user(self, username: str) -> list[ShareLink]: ...
    async def remove(self, link: ShareLink) -> bool: ...
    async def count_use(self, link: ShareLink) -> None: ...
    def close(self) -> None: ...


# What a link may point at, asked of the owner's own file server: None when it does not
# exist or the owner may not read it, else whether it is a folder.
Probe = Callable[[Identity, str], Awaitable[bool | None]]


class ShareLinks:
    def __init__(self, store: LinkStore, *, max_lifetime: float) -> None:
        self.store = store
        self.max_lifetime = max_lifetime

    async def create(self, owner: Identity, path: str, lifetime: float | None, label: str,
                     probe: Probe) -> tuple[ShareLink, str]:
        """A new link and its token (the only time the token exists in clear)."""
        try:
            segments = decode_path(path if path.startswith("/") else "/" + path)
        except BadPath as exc:
            raise LinkRefused(f"not a path: {exc}") from None
        if not segments:
            raise LinkRefused("share a folder or a file inside your folders, not /")
        lifetime = min(lifetime or self.max_lifetime, self.max_lifetime)
        if lifetime <= 0:
            raise LinkRefused("a link must be valid for some time")
        collection = await probe(owner, href(segments))
        if collection is None:
            raise LinkRefused(f"{href(segments)} does not exist or you may not read it")
        existing = await self.store.for_user(owner.username)
        if len(existing) >= MAX_LINKS_PER_USER:
            raise LinkRefused(f"you have {len(existing)} links, the most allowed; revoke one")
        token = secrets.token_urlsafe(32)
        now = time.time()
        link = ShareLink(LINK_ID_PREFIX + secrets.token_hex(8).upper(), token_hash(token),
                         owner, href(segments, collection), collection,
                         label.strip()[:80] or href(segments), now, now + lifetime)
        await self.store.add(link)
        return link, token

    async def resolve(self, token: str) -> ShareLink | None:
        """The live link of ``token``, or None (unknown, revoked or expired alike)."""
        if len(token) < 40 or len(token) > 64:
            return None
        link = await self.store.by_hash(token_hash(token))
        if link is None or link.expired(time.time()):
            return None
        return link

    async def revoke(self, link_id: str, username: str) -> bool:
        mine = [link for link in await self.store.for_user(username) if link.link_id == link_id]
        return bool(mine) and await self.store.remove(mine[0])


class SqliteLinkStore:
    """The local backend's links: a table in the key store's SQLite file."""

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, (
            "CREATE TABLE IF NOT EXISTS share_links (link_id TEXT PRIMARY KEY, "
            "token_hash TEXT UNIQUE NOT NULL, username TEXT NOT NULL, "
            "record TEXT NOT NULL, uses INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX IF NOT EXISTS links_by_user ON share_links (username)"))
        self._run = self._file.rows

    @staticmethod
    def _link(row: tuple[str, int]) -> ShareLink:
        return replace(ShareLink.from_record(json.loads(row[0])), uses=int(row[1]))

    async def add(self, link: ShareLink) -> None:
        await asyncio.to_thread(self._run, "INSERT INTO share_links VALUES (?, ?, ?, ?, 0)",
                                link.link_id, link.token_hash, link.owner.username,
                                json.dumps(link.to_record()))

    async def by_hash(self, digest: str) -> ShareLink | None:
        rows = await asyncio.to_thread(self._run, "SELECT record, uses FROM share_links "
                                       "WHERE token_hash = ?", digest)
        return self._link(rows[0]) if rows else None

    async def for_user(self, username: str) -> list[ShareLink]:
        rows = await asyncio.to_thread(self._run, "SELECT record, uses FROM share_links "
                                       "WHERE username = ?", username)
        return sorted((self._link(r) for r in rows), key=lambda link: link.created)

    async def remove(self, link: ShareLink) -> bool:
        return await asyncio.to_thread(
            self._file.changed, "DELETE FROM share_links WHERE link_id = ?", link.link_id) > 0

    async def count_use(self, link: ShareLink) -> None:
        await asyncio.to_thread(self._run, "UPDATE share_links SET uses = uses + 1 "
                                "WHERE link_id = ?", link.link_id)

    def close(self) -> None:
        self._file.close()


def encode_record(link: ShareLink) -> str:
    return base64.b64encode(json.dumps(link.to_record()).encode()).decode()


def decode_record(data: str, uses: int) -> ShareLink:
    return replace(ShareLink.from_record(json.loads(base64.b64decode(data))), uses=uses)
