"""The local backend's small tables (access keys, share links) in one SQLite file that only
the gateway's user may read."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class SqliteFile:
    """Mode 0600, write-ahead log, one statement at a time from any thread (callers run it
    with ``asyncio.to_thread``)."""

    def __init__(self, path: Path, schema: Sequence[str]) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        for statement in schema:
            self._db.execute(statement)

    def rows(self, sql: str, *args: Any) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def changed(self, sql: str, *args: Any) -> int:
        """How many rows ``sql`` changed."""
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def close(self) -> None:
        self._db.close()
