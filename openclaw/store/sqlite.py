"""
The embedded SQLite store: a WAL-mode file in ``<home>/data/``.

Every query runs on one dedicated worker thread, so the reactor never blocks
on disk and SQLite sees a single writer.  Operations queue up while a
transaction commits and the next transaction takes them all (up to
``max_batch``), so a burst of writes costs a few commits instead of one each;
every caller's Deferred fires only after the commit that holds its change.
The schema migrates itself forward and refuses a file written by a newer
openclaw.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from typing import Any, Callable

import orjson
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from openclaw.eliotutil import begin, log
from openclaw.errors import StartupError
from openclaw.events import Event, OutboxItem
from openclaw.interfaces import IStore

# Each entry moves the schema from version N to N+1 (run as one script inside
# one transaction with the user_version bump).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL DEFAULT (strftime('%s','now'))
    );
    """,
    """
    CREATE TABLE inbound (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        platform_message_id TEXT,
        session_id TEXT NOT NULL,
        type TEXT NOT NULL,
        timestamp REAL NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'done', 'failed')),
        error TEXT
    );
    CREATE UNIQUE INDEX inbound_platform_id ON inbound (source, platform_message_id)
        WHERE platform_message_id IS NOT NULL;
    CREATE INDEX inbound_received ON inbound (seq) WHERE state = 'received';
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        dedupe_key TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        text TEXT NOT NULL,
        reply_to TEXT,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX outbox_pending ON outbox (seq) WHERE status = 'pending';
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        text TEXT NOT NULL,
        event_id TEXT,
        timestamp REAL NOT NULL
    );
    CREATE INDEX history_session ON history (session_id, seq);
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        peer TEXT,
        first_seen REAL NOT NULL,
        last_active REAL NOT NULL
    );
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        timestamp REAL NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX journal_kind ON journal (kind, timestamp);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Operations per transaction; bounds how long one commit holds the writer.
MAX_BATCH = 256

Work = Callable[[sqlite3.Connection], Any]


class StoreError(StartupError):
    """The store cannot be used; ``str()`` says why and what to do."""


def open_database(path: str) -> sqlite3.Connection:
    """Open (creating) the file, enable WAL, and migrate it to SCHEMA_VERSION."""
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        # Create the file 0600 first: SQLite gives its -wal/-shm files the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as e:  # a read-only filesystem, permissions, a file where a directory should be
        reason = f"{e.filename} is not a directory" if isinstance(e, (FileExistsError, NotADirectoryError)) \
            else e.strerror
        raise StoreError(f"store: cannot open {path}: {reason}") from None
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store: {path} has schema version {version}, this openclaw knows up to "
                f"{SCHEMA_VERSION}; run a newer openclaw or restore a backup"
            )
        for number in range(version, SCHEMA_VERSION):
            try:
                db.executescript(
                    f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;"
                )
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
    except sqlite3.DatabaseError as e:
        db.close()
        raise StoreError(f"store: cannot open {path}: {e}") from None
    except StoreError:
        db.close()
        raise
    return db


def _transaction(db: sqlite3.Connection, works: list[Work]) -> list[tuple[bool, Any]]:
    """
    Run ``works`` in one transaction, each inside its own savepoint so that
    one failing operation is rolled back alone.  Runs on the worker thread.
    """
    results: list[tuple[bool, Any]] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for work in works:
            db.execute("SAVEPOINT op")
            try:
                results.append((True, work(db)))
            except Exception:
                db.execute("ROLLBACK TO op")
                results.append((False, Failure()))
            db.execute("RELEASE op")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return results


def _append_history(
    db: sqlite3.Connection, limit: int, session_id: str, role: str, text: str, event_id: str, timestamp: float
) -> None:
    db.execute(
        "INSERT INTO history (session_id, role, text, event_id, timestamp) VALUES (?, ?, ?, ?, ?)",
        (session_id, role, text, event_id, timestamp),
    )
    db.execute(
        "DELETE FROM history WHERE session_id = ? AND seq <= "
        "(SELECT seq FROM history WHERE session_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        (session_id, session_id, limit),
    )


def _insert_outbox(db: sqlite3.Connection, item: OutboxItem, now: float) -> tuple[str, bool]:
    row = db.execute("SELECT id FROM outbox WHERE dedupe_key = ?", (item.dedupe_key,)).fetchone()
    if row is not None:
        return row[0], True
    db.execute(
        "INSERT INTO outbox (id, dedupe_key, session_id, channel, text, reply_to, attempts, "
        "next_attempt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (item.id, item.dedupe_key, item.session_id, item.channel, item.text, item.reply_to,
         item.attempts, item.next_attempt or now, item.created_at or now),
    )
    return item.id, False


@implementer(IStore)
class SQLiteStore(Service):
    """``IStore`` on SQLite; opened at start, closed last at stop."""

    def __init__(self, reactor: Any, path: str, history: int = 200, max_batch: int = MAX_BATCH) -> None:
        if history < 1:
            raise ValueError("history must keep at least one message per session")
        self._reactor = reactor
        self.path = path
        self.history_limit = history
        self.max_batch = max_batch
        #: Transactions committed since start: how well writes are batched.
        self.commits = 0
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="openclaw-store")
        # A daemon thread: if the process ends without stopService (a crash
        # path), exit is not held up; nothing unacknowledged is lost, since
        # writes are acknowledged only after their commit.
        self._pool.threadFactory = functools.partial(threading.Thread, daemon=True)
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple[Work, Deferred]] = []
        self._busy = False
        self._idle: list[Deferred] = []

    def startService(self) -> None:
        # Opening happens once, before any port serves, so a bad or newer
        # file stops the start with a clear error instead of failing later.
        with begin("openclaw:store:open", path=self.path, schema_version=SCHEMA_VERSION):
            self._db = open_database(self.path)
        self._pool.start()
        Service.startService(self)

    def stopService(self) -> Deferred:
        """Finish the queued operations, then close the file and the thread."""
        Service.stopService(self)
        d = self._until_idle()
        d.addCallback(lambda _: deferToThreadPool(self._reactor, self._pool, self._close))
        d.addBoth(lambda result: (self._pool.stop(), result)[1])
        return d

    def _close(self) -> None:
        with begin("openclaw:store:close", path=self.path, commits=self.commits):
            db, self._db = self._db, None
            if db is not None:
                db.close()

    def _until_idle(self) -> Deferred:
        if not self._busy and not self._queue:
            return succeed(None)
        d: Deferred = Deferred()
        self._idle.append(d)
        return d

    def _submit(self, work: Work) -> Deferred:
        """Queue ``work`` for the next transaction; fires after its commit."""
        if self._db is None:
            return fail(StoreError("store: used while closed"))
        d: Deferred = Deferred()
        self._queue.append((work, d))
        if not self._busy:
            self._next_batch()
        return d

    def _next_batch(self) -> None:
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        self._busy = True
        d = deferToThreadPool(self._reactor, self._pool, _transaction, self._db, [w for w, _ in batch])
        d.addBoth(self._batch_done, batch)

    def _batch_done(self, outcome: Any, batch: list[tuple[Work, Deferred]]) -> None:
        self._busy = False
        # Start the next transaction first: callers' callbacks that write
        # again then queue behind it instead of running one commit each.
        if self._queue:
            self._next_batch()
        if isinstance(outcome, Failure):
            # The commit itself failed: nothing of this batch is durable.
            log("openclaw:store:commit-failed", level="error", operations=len(batch),
                error=outcome.getErrorMessage())
            for _, d in batch:
                d.errback(outcome)
        else:
            self.commits += 1
            for (ok, value), (_, d) in zip(outcome, batch):
                if ok:
                    d.callback(value)
                else:
                    log("openclaw:store:operation-failed", level="error", error=value.getErrorMessage())
                    d.errback(value)
        if not self._busy and not self._queue:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    # Key/value state

    def get_state(self, key: str) -> Deferred:
        def get(db: sqlite3.Connection) -> Any:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return None if row is None else json.loads(row[0])

        return self._submit(get)

    def set_state(self, key: str, value: Any) -> Deferred:
        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO state (key, value, updated_at) VALUES (?, ?, strftime('%s','now')) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, json.dumps(value)),
            )

        return self._submit(put)

    def delete_state(self, key: str) -> Deferred:
        return self._submit(lambda db: db.execute("DELETE FROM state WHERE key = ?", (key,)) and None)

    def state_keys(self, prefix: str) -> Deferred:
        def keys(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT key FROM state WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
            )
            return [r[0] for r in rows]

        return self._submit(keys)

    # Inbound events

    def record_inbound(self, event: Event) -> Deferred:
        platform_id = event.platform_message_id
        sender = event.payload.get("sender_id")
        peer = None if sender is None else str(sender)

        def record(db: sqlite3.Connection) -> tuple[str, bool]:
            row = db.execute("SELECT id FROM inbound WHERE id = ?", (event.id,)).fetchone()
            if row is None and platform_id is not None:
                row = db.execute(
                    "SELECT id FROM inbound WHERE source = ? AND platform_message_id = ?",
                    (event.source, platform_id),
                ).fetchone()
            if row is not None:
                return row[0], True
            db.execute(
                "INSERT INTO inbound (id, source, platform_message_id, session_id, type, timestamp, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.id, event.source, platform_id, event.session_id, event.type, event.timestamp,
                 orjson.dumps(event.payload).decode()),
            )
            if event.text:
                _append_history(db, self.history_limit, event.session_id, "user", event.text,
                                event.id, event.timestamp)
            db.execute(
                "INSERT INTO sessions (session_id, channel, peer, first_seen, last_active) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
                "channel = excluded.channel, peer = coalesce(excluded.peer, sessions.peer), "
                "last_active = max(sessions.last_active, excluded.last_active)",
                (event.session_id, event.source, peer, event.timestamp, event.timestamp),
            )
            return event.id, False

        return self._submit(record)

    def pending_inbound(self) -> Deferred:
        def pending(db: sqlite3.Connection) -> list[Event]:
            rows = db.execute(
                "SELECT id, type, source, session_id, timestamp, payload FROM inbound "
                "WHERE state = 'received' ORDER BY seq"
            )
            return [
                Event(id=r[0], type=r[1], source=r[2], session_id=r[3], timestamp=r[4],
                      payload=orjson.loads(r[5]))
                for r in rows
            ]

        return self._submit(pending)

    def complete_inbound(self, event_id: str, replies: list[OutboxItem]) -> Deferred:
        now = self._reactor.seconds()

        def complete(db: sqlite3.Connection) -> list[str]:
            row = db.execute("SELECT session_id, state FROM inbound WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                raise KeyError(f"unknown inbound event {event_id}")
            session_id, state = row
            if state != "received":
                return []
            db.execute("UPDATE inbound SET state = 'done' WHERE id = ?", (event_id,))
            enqueued = []
            for item in replies:
                outbox_id, duplicate = _insert_outbox(db, item, now)
                if not duplicate:
                    enqueued.append(outbox_id)
                if item.text:
                    _append_history(db, self.history_limit, session_id, "assistant", item.text, event_id, now)
            return enqueued

        return self._submit(complete)

    def fail_inbound(self, event_id: str, error: str) -> Deferred:
        return self._submit(lambda db: db.execute(
            "UPDATE inbound SET state = 'failed', error = ? WHERE id = ? AND state = 'received'",
            (error, event_id),
        ) and None)

    def inbound_state(self, event_id: str) -> Deferred:
        def state(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT state FROM inbound WHERE id = ?", (event_id,)).fetchone()
            return None if row is None else row[0]

        return self._submit(state)

    # Outbox

    def enqueue_outbox(self, item: OutboxItem, remember: bool = False) -> Deferred:
        now = self._reactor.seconds()

        def enqueue(db: sqlite3.Connection) -> tuple[str, bool]:
            outbox_id, duplicate = _insert_outbox(db, item, now)
            if remember and not duplicate and item.text:
                _append_history(db, self.history_limit, item.session_id, "assistant", item.text, item.id, now)
            return outbox_id, duplicate

        return self._submit(enqueue)

    def due_outbox(self, now: float, limit: int, channels: list[str] | None = None) -> Deferred:
        only = "" if channels is None else f"AND channel IN ({', '.join('?' * len(channels))}) "

        def due(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute(
                "SELECT id, session_id, channel, text, dedupe_key, reply_to, attempts, next_attempt, "
                "status, last_error, created_at FROM outbox "
                f"WHERE status = 'pending' AND next_attempt <= ? {only}ORDER BY seq LIMIT ?",
                (now, *(channels or []), limit),
            )
            return [
                OutboxItem(id=r[0], session_id=r[1], channel=r[2], text=r[3], dedupe_key=r[4],
                           reply_to=r[5], attempts=r[6], next_attempt=r[7], status=r[8],
                           last_error=r[9], created_at=r[10])
                for r in rows
            ]

        return self._submit(due)

    def mark_sent(self, outbox_id: str) -> Deferred:
        return self._submit(lambda db: db.execute(
            "UPDATE outbox SET status = 'sent' WHERE id = ? AND status = 'pending'", (outbox_id,)
        ) and None)

    def mark_retry(self, outbox_id: str, next_attempt: float, error: str) -> Deferred:
        return self._submit(lambda db: db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ? "
            "WHERE id = ? AND status = 'pending'",
            (next_attempt, error, outbox_id),
        ) and None)

    def mark_failed(self, outbox_id: str, error: str) -> Deferred:
        """Counts the attempt that failed for good, like ``mark_retry``."""
        return self._submit(lambda db: db.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? "
            "WHERE id = ? AND status = 'pending'",
            (error, outbox_id),
        ) and None)

    def outbox_counts(self) -> Deferred:
        def counts(db: sqlite3.Connection) -> dict[str, int]:
            result = {"pending": 0, "sent": 0, "failed": 0}
            result.update(db.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
            return result

        return self._submit(counts)

    def message_counts(self, since: float, until: float) -> Deferred:
        def counts(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
            result: dict[str, dict[str, int]] = {}

            def add(channel: str, field: str, n: int) -> None:
                result.setdefault(channel, {"in": 0, "out": 0, "failed": 0})[field] = n

            for source, n in db.execute(
                "SELECT source, count(*) FROM inbound WHERE timestamp >= ? AND timestamp < ? GROUP BY source",
                (since, until),
            ):
                add(source, "in", n)
            for channel, status, n in db.execute(
                "SELECT channel, status, count(*) FROM outbox WHERE status IN ('sent', 'failed') "
                "AND created_at >= ? AND created_at < ? GROUP BY channel, status",
                (since, until),
            ):
                add(channel, "out" if status == "sent" else "failed", n)
            return result

        return self._submit(counts)

    def prune(self, before: float, limit: int) -> Deferred:
        def prune(db: sqlite3.Connection) -> dict[str, int]:
            def delete(table: str, where: str) -> int:
                return db.execute(
                    f"DELETE FROM {table} WHERE seq IN (SELECT seq FROM {table} WHERE {where} ORDER BY seq LIMIT ?)",
                    (before, limit),
                ).rowcount

            return {
                "outbox": delete("outbox", "status = 'sent' AND created_at < ?"),
                "inbound": delete("inbound", "state != 'received' AND timestamp < ?"),
                "journal": delete("journal", "timestamp < ?"),
            }

        return self._submit(prune)

    # Sessions and history

    def history(self, session_id: str, limit: int) -> Deferred:
        def history(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT role, text, event_id, timestamp FROM history WHERE session_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (session_id, max(limit, 0)),
            ).fetchall()
            return [{"role": r[0], "text": r[1], "event_id": r[2], "timestamp": r[3]} for r in reversed(rows)]

        return self._submit(history)

    def sessions(self) -> Deferred:
        def sessions(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT session_id, channel, peer, first_seen, last_active FROM sessions ORDER BY session_id"
            )
            return [{"session_id": r[0], "channel": r[1], "peer": r[2], "first_seen": r[3], "last_active": r[4]}
                    for r in rows]

        return self._submit(sessions)

    # Journal

    def append_journal(self, kind: str, timestamp: float, payload: Any) -> Deferred:
        return self._submit(lambda db: db.execute(
            "INSERT INTO journal (kind, timestamp, payload) VALUES (?, ?, ?)",
            (kind, timestamp, orjson.dumps(payload).decode()),
        ) and None)

    def journal(self, kind: str, since: float) -> Deferred:
        def journal(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT timestamp, payload FROM journal WHERE kind = ? AND timestamp >= ? ORDER BY timestamp, seq",
                (kind, since),
            )
            return [{"kind": kind, "timestamp": r[0], "payload": orjson.loads(r[1])} for r in rows]

        return self._submit(journal)
