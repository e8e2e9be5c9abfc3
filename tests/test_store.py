"""The SQLite store's key/value part and its schema versioning."""

from __future__ import annotations

import os
import sqlite3

import pytest
import pytest_twisted
from twisted.internet import reactor

from openclaw.interfaces import IStore
from openclaw.store.sqlite import SCHEMA_VERSION, SQLiteStore, StoreError


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
