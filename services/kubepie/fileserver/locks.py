"""Write locks (RFC 4918 §6 and §7): exclusive and shared, depth 0 or infinity, with timeouts.

Locks are kept in memory when the file server is one process, and in a SQLite table on tmpfs
that its processes share when it runs several (``FILESERVER_PROCESSES``): a lock taken through
one process holds in all of them. Losing locks on a restart is allowed (clients see 412 on
their next conditional request and lock again); the files themselves are never at risk.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

Segments = tuple[str, ...]

TOKEN_SCHEME = "opaquelocktoken:"  # noqa: S105 - a URI scheme, not a secret


class LockConflict(Exception):
    """Another lock is in the way (423)."""


@dataclass
class Lock:
    token: str
    root: Segments
    root_href: str
    exclusive: bool
    infinite: bool
    owner: str | None
    timeout: float
    expires: float = field(init=False)

    def __post_init__(self) -> None:
        self.refresh(self.timeout)

    def refresh(self, timeout: float) -> None:
        self.timeout = timeout
        self.expires = time.monotonic() + timeout

    def covers(self, segments: Segments) -> bool:
        if segments == self.root:
            return True
        return self.infinite and segments[:len(self.root)] == self.root

    def active_lock_xml(self) -> str:
        scope = "<D:exclusive/>" if self.exclusive else "<D:shared/>"
        left = max(0, round(self.expires - time.monotonic()))
        return ("<D:activelock>"
                f"<D:locktype><D:write/></D:locktype><D:lockscope>{scope}</D:lockscope>"
                f"<D:depth>{'infinity' if self.infinite else '0'}</D:depth>"
                f"{self.owner or ''}<D:timeout>Second-{left}</D:timeout>"
                f"<D:locktoken><D:href>{escape(self.token)}</D:href></D:locktoken>"
                f"<D:lockroot><D:href>{escape(self.root_href)}</D:href></D:lockroot>"
                "</D:activelock>")


class LockManager:
    def __init__(self, max_timeout: float, max_locks: int = 10_000) -> None:
        self.max_timeout = max_timeout
        self.max_locks = max_locks
        self._locks: dict[str, Lock] = {}

    def _live(self) -> list[Lock]:
        now = time.monotonic()
        for token in [t for t, lock in self._locks.items() if lock.expires <= now]:
            del self._locks[token]
        return list(self._locks.values())

    def get(self, token: str) -> Lock | None:
        self._live()
        return self._locks.get(token)

    def covering(self, segments: Segments) -> list[Lock]:
        """Locks on ``segments`` or on an ancestor with depth infinity."""
        return [lock for lock in self._live() if lock.covers(segments)]

    def rooted_at(self, segments: Segments) -> list[Lock]:
        """Locks taken on ``segments`` itself: they guard its list of members."""
        return [lock for lock in self._live() if lock.root == segments]

    def within(self, segments: Segments) -> list[Lock]:
        """Locks on ``segments``, an ancestor (infinity) or anything below it."""
        return [lock for lock in self._live()
                if lock.covers(segments) or lock.root[:len(segments)] == segments]

    def lock(self, segments: Segments, href: str, *, exclusive: bool, infinite: bool,
             owner: str | None, timeout: float) -> Lock:
        others = self.within(segments) if infinite else self.covering(segments)
        if any(other.exclusive or exclusive for other in others):
            raise LockConflict("the resource is locked")
        if len(self._locks) >= self.max_locks:
            raise LockConflict("too many locks")
        lock = Lock(f"{TOKEN_SCHEME}{uuid.uuid4()}", segments, href, exclusive, infinite,
                    owner, min(timeout, self.max_timeout))
        self._locks[lock.token] = lock
        return lock

    def unlock(self, token: str) -> bool:
        return self._locks.pop(token, None) is not None

    def refresh(self, lock: Lock, timeout: float) -> None:
        """A LOCK without a body: the lock lasts ``timeout`` from now."""
        lock.refresh(min(timeout, self.max_timeout))

    def forget_below(self, segments: Segments) -> None:
        """A resource was deleted or moved away: its locks and those of its members end."""
        for token in [t for t, lock in self._locks.items()
                      if lock.root[:len(segments)] == segments]:
            del self._locks[token]

    def close(self) -> None:
        """Nothing to release in memory."""

    def timeout_for(self, header: str | None) -> float:
        """The first timeout of ``Timeout: Second-600, Infinite`` we accept, capped."""
        for item in (header or "").split(","):
            item = item.strip()
            if item.lower() == "infinite":
                return self.max_timeout
            if item.lower().startswith("second-") and item[7:].isdigit():
                return min(float(item[7:]), self.max_timeout)
        return self.max_timeout


class SharedLockManager(LockManager):
    """The same lock table for every process of one file server: a SQLite file (write-ahead
    log, on tmpfs) that only the server's user can open. Each question reads the table again
    when another process changed it (``PRAGMA data_version``); taking a lock checks for
    conflicts and inserts in one ``BEGIN IMMEDIATE`` transaction, so two processes can never
    both grant an exclusive lock. The table is a few rows: each statement takes microseconds,
    which is why it runs on the event loop rather than in a thread."""

    def __init__(self, path: Path, max_timeout: float, max_locks: int = 10_000) -> None:
        super().__init__(max_timeout, max_locks)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA synchronous=OFF")  # tmpfs: nothing to survive a crash for
        self._version = -1

    @staticmethod
    def create(path: Path) -> None:
        """The table, in write-ahead-log mode, made once before the processes start (several
        switching the journal mode at once would find the database locked)."""
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE locks (token TEXT PRIMARY KEY, root TEXT, root_href TEXT, "
                       "exclusive INTEGER, infinite INTEGER, owner TEXT, timeout REAL, "
                       "expires REAL)")
        finally:
            db.close()

    def _load(self, force: bool = False) -> None:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version and not force:
            return
        self._version = version
        self._locks = {}
        for token, root, href, exclusive, infinite, owner, timeout, expires in \
                self._db.execute("SELECT * FROM locks"):
            lock = Lock(token, tuple(json.loads(root)), href, bool(exclusive), bool(infinite),
                        owner, timeout)
            lock.expires = expires  # CLOCK_MONOTONIC is the machine's, shared by processes
            self._locks[token] = lock

    def _live(self) -> list[Lock]:
        self._load()
        return super()._live()

    def lock(self, segments: Segments, href: str, *, exclusive: bool, infinite: bool,
             owner: str | None, timeout: float) -> Lock:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._load(force=True)
            lock = super().lock(segments, href, exclusive=exclusive, infinite=infinite,
                                owner=owner, timeout=timeout)
            self._db.execute("DELETE FROM locks WHERE expires <= ?", (time.monotonic(),))
            self._db.execute("INSERT INTO locks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (lock.token, json.dumps(lock.root), lock.root_href,
                              lock.exclusive, lock.infinite, lock.owner, lock.timeout,
                              lock.expires))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return lock

    def unlock(self, token: str) -> bool:
        super().unlock(token)
        return self._db.execute("DELETE FROM locks WHERE token = ?", (token,)).rowcount > 0

    def refresh(self, lock: Lock, timeout: float) -> None:
        super().refresh(lock, timeout)
        self._db.execute("UPDATE locks SET timeout = ?, expires = ? WHERE token = ?",
                         (lock.timeout, lock.expires, lock.token))

    def forget_below(self, segments: Segments) -> None:
        self._load()
        gone = [t for t, lock in self._locks.items() if lock.root[:len(segments)] == segments]
        super().forget_below(segments)
        self._db.executemany("DELETE FROM locks WHERE token = ?", [(t,) for t in gone])

    def close(self) -> None:
        self._db.close()
