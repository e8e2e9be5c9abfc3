"""
The embedded SQLite store: a WAL-mode file in ``<home>/data/``.

Every query runs on one dedicated worker thread, so the reactor never blocks
on disk and SQLite sees a single writer.  The schema migrates itself forward
and refuses a file written by a newer openclaw.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from openclaw.eliotutil import begin
from openclaw.errors import StartupError
from openclaw.interfaces import IStore

# Each entry moves the schema from version N to N+1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL DEFAULT (strftime('%s','now'))
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(StartupError):
    """The store cannot be used; ``str()`` says why and what to do."""


def open_database(path: str) -> sqlite3.Connection:
    """Open (creating) the file, enable WAL, and migrate it to SCHEMA_VERSION."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    # Create the file 0600 first: SQLite gives its -wal/-shm files the same mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store: {path} has schema version {version}, this openclaw knows up to "
                f"{SCHEMA_VERSION}; run a newer openclaw or restore a backup"
            )
        for number in range(version, SCHEMA_VERSION):
            with db:
                db.execute("BEGIN")
                db.execute(MIGRATIONS[number])
                db.execute(f"PRAGMA user_version = {number + 1}")
    except sqlite3.DatabaseError as e:
        db.close()
        raise StoreError(f"store: cannot open {path}: {e}") from None
    except StoreError:
        db.close()
        raise
    return db


@implementer(IStore)
class SQLiteStore(Service):
    """``IStore`` on SQLite; opened at start, closed last at stop."""


    def __init__(self, reactor: Any, path: str, history: int = 200) -> None:
        self._reactor = reactor
        self.path = path
        self.history_limit = history
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="openclaw-store")
        self._db: sqlite3.Connection | None = None

    def startService(self) -> None:
        # Opening happens once, before any port serves, so a bad or newer
        # file stops the start with a clear error instead of failing later.
        with begin("openclaw:store:open", path=self.path, schema_version=SCHEMA_VERSION):
            self._db = open_database(self.path)
        self._pool.start()
        Service.startService(self)

    def stopService(self) -> Deferred:
        Service.stopService(self)
        d = self._run(self._close)
        d.addBoth(lambda result: (self._pool.stop(), result)[1])
        return d

    def _close(self, db: sqlite3.Connection) -> None:
        db.close()
        self._db = None

    def _run(self, work: Callable[..., Any], *args: Any) -> Deferred:
        db = self._db
        if db is None:
            raise StoreError("store: used while closed")
        return deferToThreadPool(self._reactor, self._pool, work, db, *args)

    def get_state(self, key: str) -> Deferred:
        def get(db: sqlite3.Connection) -> Any:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return None if row is None else json.loads(row[0])

        return self._run(get)

    def set_state(self, key: str, value: Any) -> Deferred:
        text = json.dumps(value)

        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO state (key, value, updated_at) VALUES (?, ?, strftime('%s','now')) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, text),
            )

        return self._run(put)

    def delete_state(self, key: str) -> Deferred:
        return self._run(lambda db: db.execute("DELETE FROM state WHERE key = ?", (key,)) and None)

    def state_keys(self, prefix: str) -> Deferred:
        def keys(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT key FROM state WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
            )
            return [r[0] for r in rows]

        return self._run(keys)
