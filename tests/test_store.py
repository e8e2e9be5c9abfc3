"""The SQLite store: the shared contract, batching, and schema versioning."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults

from openclaw.interfaces import IStore
from openclaw.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, StoreError
from tests.store_contract import HISTORY, Backend, StoreContract, message, reply


@pytest_twisted.async_yield_fixture
async def backend(tmp_path) -> Any:
    b = Backend(lambda namespace: SQLiteStore(reactor, str(tmp_path / f"{namespace}.sqlite3"), HISTORY))
    yield b
    await b.close()


class TestSQLiteContract(StoreContract):
    pass


@pytest_twisted.inlineCallbacks
def test_writes_queued_during_a_commit_share_the_next_one(backend: Backend) -> Any:
    store = yield backend.start()
    events = [message(session=f"s{i % 7}", text=f"m{i}", platform_id=i) for i in range(500)]
    results = yield gatherResults([store.record_inbound(e) for e in events])
    assert results == [(e.id, False) for e in events]
    assert store.commits < 50
    assert [e.id for e in (yield store.pending_inbound())] == [e.id for e in events]


@pytest_twisted.inlineCallbacks
def test_one_failing_operation_does_not_fail_its_batch(backend: Backend) -> Any:
    store = yield backend.start()
    event = message(text="question")
    yield store.record_inbound(event)
    commits = store.commits
    good = [message(text=f"m{i}") for i in range(5)]
    # The reply's NULL text violates NOT NULL after the event was marked done:
    # its savepoint must undo that, while the others in the batch commit.
    broken = reply(event, text=None)  # type: ignore[arg-type]
    ds = [store.record_inbound(e) for e in good[:2]] + [store.complete_inbound(event.id, [broken])] + [
        store.record_inbound(e) for e in good[2:]]
    outcomes = yield gatherResults([d.addErrback(lambda f: f.value) for d in ds])
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    assert [o for i, o in enumerate(outcomes) if i != 2] == [(e.id, False) for e in good]
    assert store.commits - commits <= 2
    assert (yield store.inbound_state(event.id)) == "received"
    assert (yield store.outbox_counts())["pending"] == 0
    assert [e.id for e in (yield store.pending_inbound())] == [event.id] + [e.id for e in good]


@pytest_twisted.inlineCallbacks
def test_stop_waits_for_queued_writes_and_refuses_later_ones(tmp_path) -> Any:
    path = str(tmp_path / "s.sqlite3")
    store = SQLiteStore(reactor, path)
    store.startService()
    writes = [store.set_state(f"k{i}", i) for i in range(100)]
    yield store.stopService()
    yield gatherResults(writes)
    with pytest.raises(StoreError, match="closed"):
        yield store.get_state("k1")
    again = SQLiteStore(reactor, path)
    again.startService()
    assert len((yield again.state_keys("k"))) == 100
    yield again.stopService()


@pytest_twisted.inlineCallbacks
def test_state_round_trip_survives_a_restart(tmp_path) -> None:
    path = str(tmp_path / "data" / "openclaw.sqlite3")
    store = SQLiteStore(reactor, path)
    assert IStore.providedBy(store)
    store.startService()
    assert (yield store.get_state("missing")) is None
    yield store.set_state("a:1", {"x": [1, 2]})
    yield store.set_state("a:2", "two")
    yield store.set_state("a:1", {"x": [3]})
    yield store.set_state("b", 0)
    assert (yield store.state_keys("a:")) == ["a:1", "a:2"]
    yield store.delete_state("a:2")
    yield store.delete_state("never-there")
    yield store.stopService()
    assert os.stat(path).st_mode & 0o777 == 0o600

    again = SQLiteStore(reactor, path)
    again.startService()
    assert (yield again.get_state("a:1")) == {"x": [3]}
    assert (yield again.state_keys("")) == ["a:1", "b"]
    yield again.stopService()


@pytest_twisted.inlineCallbacks
def test_wal_mode_and_schema_version(tmp_path) -> None:
    path = str(tmp_path / "s.sqlite3")
    store = SQLiteStore(reactor, path)
    store.startService()
    yield store.stopService()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path) -> None:
    path = str(tmp_path / "s.sqlite3")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, this openclaw knows up to"):
        SQLiteStore(reactor, path).startService()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path) -> None:
    path = tmp_path / "s.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        SQLiteStore(reactor, str(path)).startService()


@pytest_twisted.inlineCallbacks
def test_a_version_1_file_migrates_and_keeps_its_rows(tmp_path) -> None:
    path = str(tmp_path / "old.sqlite3")
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO state (key, value) VALUES ('kept', '[1, 2]')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SQLiteStore(reactor, path)
    store.startService()
    assert (yield store.get_state("kept")) == [1, 2]
    event = message()
    assert (yield store.record_inbound(event)) == (event.id, False)
    yield store.stopService()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()
