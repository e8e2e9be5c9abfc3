"""
Costs independent of history size (SQLite): no statement the store runs
scans a table that grows with traffic, and the outbox counts come from
counters kept in the transactions that change rows, right after a crash,
a migration and a backup copy.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import signal
import sqlite3
import subprocess
import sys
import pytest
from hypothesis import given, settings

from openclaw import backup
from openclaw.store import sqlite as store_module
from openclaw.store.sqlite import MIGRATIONS, OUTBOX_COUNTS_SQL, open_database
from tests.strategies import outbox_operations

#: Tables that grow with messages (inbound, outbox, history, journal) or
#: with peers (sessions, state): a statement may only search them through
#: an index, or scan a partial index (its rows are pending work, not history).
GROWING = {"inbound", "outbox", "history", "journal", "sessions", "state"}

#: Statements that return a whole table by design, and why that is fine.
WHOLE_BY_DESIGN = {
    "SESSIONS_SQL": "sessions.list and the daily report list every session (one row per peer)",
}

_DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|REPLACE)\b", re.IGNORECASE)
_CONTROL = re.compile(r"^(PRAGMA|BEGIN|SAVEPOINT|ROLLBACK|RELEASE|COMMIT)\b")


def statements() -> dict[str, str]:
    return {name: value for name, value in vars(store_module).items()
            if name.endswith("_SQL") and isinstance(value, str)}


def filled(path: str, rows: int = 3000) -> sqlite3.Connection:
    """A store file with ``rows`` of everything that grows (through the schema, not the API: fast)."""
    db = open_database(path)
    db.execute("BEGIN")
    for i in range(rows):
        status = ("sent", "sent", "failed", "pending")[i % 4]
        state = ("done", "done", "failed", "received")[i % 4]
        db.execute("INSERT INTO inbound (id, source, platform_message_id, session_id, type, timestamp, payload, state)"
                   " VALUES (?, 'telegram', ?, ?, 'message.received', ?, '{}', ?)",
                   (f"e{i}", str(i), f"telegram:{i % 300}", float(i), state))
        db.execute("INSERT INTO outbox (id, dedupe_key, session_id, channel, text, status, next_attempt, created_at)"
                   " VALUES (?, ?, ?, 'telegram', 'x', ?, ?, ?)", (f"o{i}", f"d{i}", f"telegram:{i % 300}", status,
                                                                   float(i), float(i)))
        db.execute("INSERT INTO history (session_id, role, text, event_id, timestamp) VALUES (?, 'user', 'x', ?, ?)",
                   (f"telegram:{i % 300}", f"e{i}", float(i)))
        db.execute("INSERT INTO journal (kind, timestamp, payload) VALUES (?, ?, '{}')", (f"k{i % 5}", float(i)))
        db.execute("INSERT OR IGNORE INTO sessions (session_id, channel, first_seen, last_active) "
                   "VALUES (?, 'telegram', 0, 0)", (f"telegram:{i % 300}",))
        db.execute("INSERT INTO state (key, value) VALUES (?, '1')", (f"usage:telegram:{i}",))
    db.execute("COMMIT")
    return db


def plan(db: sqlite3.Connection, sql: str) -> list[str]:
    """The query plan's lines, binding NULL to every parameter."""
    for n in range(16):
        try:
            return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, (None,) * n)]
        except sqlite3.ProgrammingError:
            continue
    raise AssertionError(f"cannot bind the parameters of {sql!r}")


def full_scans(db: sqlite3.Connection, lines: list[str]) -> list[str]:
    """The lines that scan a growing table other than through a partial index."""
    partial = {row[1] for table in GROWING for row in db.execute(f"PRAGMA index_list({table})") if row[4]}
    bad = []
    for line in lines:
        m = re.match(r"SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?", line)
        if m and m.group(1) in GROWING and m.group(2) not in partial:
            bad.append(line)
    return bad


def test_the_check_sees_a_full_scan(tmp_path) -> None:
    """The detector itself: the old outbox count (a GROUP BY over every row) is a full scan."""
    db = filled(str(tmp_path / "s.sqlite3"), rows=50)
    assert full_scans(db, plan(db, "SELECT status, count(*) FROM outbox GROUP BY status"))
    assert full_scans(db, plan(db, "SELECT key FROM state WHERE substr(key, 1, 3) = 'abc'"))
    assert not full_scans(db, plan(db, "SELECT id FROM outbox WHERE status = 'pending' ORDER BY seq"))


@pytest.mark.parametrize("analyzed", [False, True], ids=["as-opened", "after-analyze"])
def test_no_statement_scans_a_growing_table(tmp_path, analyzed: bool) -> None:
    db = filled(str(tmp_path / "s.sqlite3"))
    if analyzed:
        db.execute("ANALYZE")
    found = statements()
    assert len(found) >= 30
    scans = {name: full_scans(db, plan(db, sql)) for name, sql in found.items() if name not in WHOLE_BY_DESIGN}
    assert {name: lines for name, lines in scans.items() if lines} == {}
    assert set(WHOLE_BY_DESIGN) <= set(found)


def test_every_statement_the_store_runs_is_a_checked_constant() -> None:
    """
    ``db.execute`` takes a ``*_SQL`` constant or a transaction-control
    literal, and no other SQL text is in the module, so a new query cannot
    escape ``test_no_statement_scans_a_growing_table``.
    """
    tree = ast.parse(inspect.getsource(store_module))
    migrations = next(node.value for node in tree.body if isinstance(node, ast.AnnAssign)
                      and getattr(node.target, "id", "") == "MIGRATIONS")
    allowed = {id(n) for n in ast.walk(migrations)}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "").endswith("_SQL") for t in node.targets):
            allowed |= {id(n) for n in ast.walk(node.value)}
    stray = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("execute", "executescript") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id.endswith("_SQL") or isinstance(arg, ast.Name) and arg.id == "sql":
                continue
            if isinstance(arg, ast.Constant) and _CONTROL.match(arg.value):
                continue
            if isinstance(arg, ast.JoinedStr) and node.func.attr == "executescript":
                continue  # the migration runner: BEGIN; MIGRATIONS[n]; PRAGMA user_version; COMMIT
            stray.append(ast.unparse(node)[:100])
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _DML.match(node.value) \
                and id(node) not in allowed:
            stray.append(node.value[:100])
    assert stray == []


def truth(db: sqlite3.Connection) -> dict[str, int]:
    counts = {"pending": 0, "sent": 0, "failed": 0}
    counts.update(db.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
    return counts


def counters(db: sqlite3.Connection) -> dict[str, int]:
    return dict(db.execute(OUTBOX_COUNTS_SQL))


@settings(max_examples=40, deadline=None)
@given(outbox_operations())
def test_counters_match_the_rows_whatever_changes_them(tmp_path_factory, ops: list[tuple[str, int, bool]]) -> None:
    """Each op in its own transaction, some rolled back: the counters follow exactly what committed."""
    db = open_database(str(tmp_path_factory.mktemp("c") / "s.sqlite3"))
    for serial, (op, n, rolled_back) in enumerate(ops):
        db.execute("BEGIN")
        if op == "insert":
            db.execute(store_module.INSERT_OUTBOX_SQL,
                       (f"o{serial}", f"d{serial}", "s", "webchat", "x", None, 0, 0.0, float(n)))
        elif op == "sent":
            db.execute(store_module.MARK_SENT_SQL, (f"o{n}",))
        elif op == "failed":
            db.execute(store_module.MARK_FAILED_SQL, ("e", f"o{n}"))
        elif op == "retry":
            db.execute(store_module.MARK_RETRY_SQL, (1.0, "e", f"o{n}"))
        elif op == "delete":
            db.execute("DELETE FROM outbox WHERE id = ?", (f"o{n}",))
        else:
            db.execute(store_module.PRUNE_OUTBOX_SQL, (float(n), 3))
        db.execute("ROLLBACK" if rolled_back else "COMMIT")
    assert counters(db) == truth(db)
    db.close()


def test_a_version_2_file_is_counted_once_when_it_migrates(tmp_path) -> None:
    path = str(tmp_path / "old.sqlite3")
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    for i, status in enumerate(["sent"] * 5 + ["failed"] * 2 + ["pending"] * 3):
        db.execute("INSERT INTO outbox (id, dedupe_key, session_id, channel, text, status, next_attempt, created_at)"
                   " VALUES (?, ?, 's', 'webchat', 'x', ?, 0, 0)", (f"o{i}", f"d{i}", status))
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    db = open_database(path)
    assert counters(db) == truth(db) == {"pending": 3, "sent": 5, "failed": 2}


def test_a_backup_copy_keeps_its_counters(tmp_path) -> None:
    path = str(tmp_path / "s.sqlite3")
    filled(path, rows=200).close()
    restored = tmp_path / "restored.sqlite3"
    restored.write_bytes(backup.copy_sqlite(path))
    db = open_database(str(restored))
    assert counters(db) == truth(db) == {"pending": 50, "sent": 100, "failed": 50}


WRITER = """
import sys
from openclaw.store.sqlite import open_database, INSERT_OUTBOX_SQL, MARK_SENT_SQL
db = open_database(sys.argv[1])
i = 0
while True:
    db.execute("BEGIN IMMEDIATE")
    db.execute(INSERT_OUTBOX_SQL, (f"o{i}", f"d{i}", "s", "webchat", "x", None, 0, 0.0, 0.0))
    db.execute(MARK_SENT_SQL, (f"o{i // 2}",))
    db.execute("COMMIT")
    i += 1
    if i == 200:
        print("going", flush=True)
"""


def test_counters_are_right_after_the_writer_is_killed_mid_write(tmp_path) -> None:
    """SIGKILL between (or inside) transactions: a counter never disagrees with the rows it counts."""
    path = str(tmp_path / "s.sqlite3")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline() == b"going\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
    db = open_database(path)
    counts = counters(db)
    assert counts == truth(db)
    assert counts["sent"] >= 100
