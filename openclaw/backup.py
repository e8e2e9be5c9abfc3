"""
Backups of a home: the SQLite store copied with SQLite's online backup API
(from a connection of its own, so it is consistent while the daemon writes
in WAL mode), the config and ``HEARTBEAT.md``, and the gateway token only
when asked (``with_secrets``).  One tar file, mode 0600, with a manifest of
versions and SHA-256 checksums; ``verify`` checks them and the database's
integrity; ``restore`` refuses while a daemon holds the home's lock.

The choices (what to include, the manifest, which old backups to delete)
are pure functions apart from the copying.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from openclaw import __version__
from openclaw.store.sqlite import SCHEMA_VERSION
from openclaw.system import homelock

FORMAT = 1
MANIFEST = "manifest.json"
STORE = "store.sqlite3"
REDIS = "redis.json"
TOKEN = "gateway.token"
PREFIX = "openclaw-backup-"
SUFFIX = ".tar"


class BackupError(Exception):
    """A backup cannot be made, read or restored; ``str()`` is one line for the operator."""


@dataclass(frozen=True)
class Source:
    """What a home's backup reads: the store file and the plain files by their name in the backup."""

    store: str
    files: dict[str, str]


def sources(home: str, store_path: str, config_file: str | None, with_secrets: bool) -> Source:
    """The files of ``home`` a backup includes (the ones that exist); the token only ``with_secrets``."""
    candidates = {"openclaw.yaml": config_file, "HEARTBEAT.md": os.path.join(home, "HEARTBEAT.md")}
    if with_secrets:
        candidates[TOKEN] = os.path.join(home, TOKEN)
    return Source(store_path, {name: path for name, path in candidates.items() if path and os.path.isfile(path)})


def manifest(checksums: dict[str, str], schema_version: int, created_at: float, with_secrets: bool) -> dict:
    """The manifest stored first in a backup."""
    return {"format": FORMAT, "openclaw": __version__, "schema_version": schema_version,
            "created_at": created_at, "with_secrets": with_secrets, "files": dict(sorted(checksums.items()))}


def expired(names: list[str], keep: int) -> list[str]:
    """
    The backups (file names made by ``backup_name``) to delete so that the
    newest ``keep`` remain; other names are never chosen.
    """
    ours = sorted(n for n in names if n.startswith(PREFIX) and n.endswith(SUFFIX))
    return ours[:max(0, len(ours) - keep)]


def backup_name(now: float) -> str:
    """A file name that sorts by time (UTC, to the second)."""
    return PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + SUFFIX


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copy_sqlite(path: str) -> bytes:
    """A consistent copy of the database at ``path``, made by SQLite's online backup."""
    if not os.path.isfile(path):
        raise BackupError(f"backup: no store at {path}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, STORE)
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                dst = sqlite3.connect(copy)
                try:
                    src.backup(dst)
                    dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.Error as e:
            raise BackupError(f"backup: cannot copy the store {path}: {e}") from None
        with open(copy, "rb") as f:
            return f.read()


def _schema_version(data: bytes) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, STORE)
        with open(path, "wb") as f:
            f.write(data)
        db = sqlite3.connect(path)
        try:
            if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("backup: the store copy fails SQLite's integrity check")
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as e:
            raise BackupError(f"backup: the store copy is not a database: {e}") from None
        finally:
            db.close()


def create(source: Source, to: str, now: float, with_secrets: bool = False, redis: bytes | None = None) -> str:
    """
    Write a backup of ``source`` to ``to`` (a file, or a directory to put a
    timestamped file in), created 0600 and renamed into place when complete.
    ``redis``: a Redis store's export, instead of the SQLite file.

    :return: the path written.
    """
    if os.path.isdir(to):
        to = os.path.join(to, backup_name(now))
    members = {REDIS: redis} if redis is not None else {STORE: copy_sqlite(source.store)}
    for name, path in source.files.items():
        with open(path, "rb") as f:
            members[name] = f.read()
    schema = _schema_version(members[STORE]) if redis is None else SCHEMA_VERSION
    head = manifest({n: _sha256(d) for n, d in members.items()}, schema, now, with_secrets)
    directory = os.path.dirname(os.path.abspath(to))
    fd, tmp = tempfile.mkstemp(prefix=".backup-", dir=directory)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
            for name, data in [(MANIFEST, json.dumps(head, indent=2).encode()), *members.items()]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o600, int(now)
                tar.addfile(info, io.BytesIO(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, to)
    except BaseException:
        os.unlink(tmp)
        raise
    return to


def read(path: str) -> tuple[dict, dict[str, bytes]]:
    """
    The manifest and members of the backup at ``path``, checked: every
    checksum matches and the store passes SQLite's integrity check.
    """
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = {}
            for info in tar.getmembers():
                if not info.isfile() or "/" in info.name or info.name.startswith("."):
                    raise BackupError(f"backup: {path} has an unexpected member {info.name!r}")
                members[info.name] = tar.extractfile(info).read()
    except (OSError, tarfile.TarError) as e:
        raise BackupError(f"backup: cannot read {path}: {e}") from None
    try:
        head = json.loads(members.pop(MANIFEST))
    except (KeyError, ValueError):
        raise BackupError(f"backup: {path} has no readable {MANIFEST}") from None
    if head.get("format") != FORMAT:
        raise BackupError(f"backup: {path} has format {head.get('format')!r}, this openclaw reads {FORMAT}")
    files = head.get("files") or {}
    if set(files) != set(members):
        raise BackupError(f"backup: {path} lists {sorted(files)} but holds {sorted(members)}")
    for name, digest in files.items():
        if _sha256(members[name]) != digest:
            raise BackupError(f"backup: {name} in {path} does not match its checksum")
    if REDIS in members:
        try:
            if not isinstance(json.loads(members[REDIS]), list):
                raise ValueError
        except ValueError:
            raise BackupError(f"backup: the Redis export in {path} is not a list of keys") from None
    elif STORE not in members:
        raise BackupError(f"backup: {path} holds no store")
    elif _schema_version(members[STORE]) != head.get("schema_version"):
        raise BackupError(f"backup: the store in {path} is not the schema version its manifest says")
    return head, members


def restore(path: str, home: str, store_path: str, config_file: str) -> list[str]:
    """
    Put the backup at ``path`` back into ``home`` (see ``put``), holding the
    home's lock meanwhile: refused while a daemon holds it, and no daemon
    starts on a half-restored home.

    :return: the paths written.
    """
    head, members = read(path)
    with home_locked(home):
        return put(head, members, path, home, store_path, config_file)


@contextmanager
def home_locked(home: str) -> Iterator[None]:
    """Hold ``home``'s lock; :raise BackupError: while a daemon holds it."""
    try:
        lock = homelock.acquire(home)
    except homelock.HomeLocked:
        who = f"pid {homelock.holder(home)}" if homelock.holder(home) else "another process"
        raise BackupError(f"backup: a daemon ({who}) holds {home}; stop it before restoring") from None
    try:
        yield
    finally:
        os.close(lock)


def put(head: dict, members: dict[str, bytes], path: str, home: str, store_path: str, config_file: str) -> list[str]:
    """
    Write a checked backup's files: the store replaces ``store_path`` (its
    stale ``-wal``/``-shm`` removed first); the config goes to
    ``config_file``, the rest into ``home``, each 0600.  A Redis export is
    left to the caller.
    """
    if head["schema_version"] > SCHEMA_VERSION:
        raise BackupError(f"backup: {path} has store schema {head['schema_version']}, this openclaw knows "
                          f"up to {SCHEMA_VERSION}; restore with a newer openclaw")
    targets = {STORE: store_path, "openclaw.yaml": config_file, "HEARTBEAT.md": os.path.join(home, "HEARTBEAT.md"),
               TOKEN: os.path.join(home, TOKEN)}
    written = []
    for name, data in members.items():
        target = targets.get(name)
        if target is None:
            continue
        os.makedirs(os.path.dirname(target) or ".", mode=0o700, exist_ok=True)
        if name == STORE:
            for stale in (target + "-wal", target + "-shm"):
                if os.path.exists(stale):
                    os.unlink(stale)
        fd, tmp = tempfile.mkstemp(prefix=".restore-", dir=os.path.dirname(target) or ".")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        written.append(target)
    return written


def rotate(directory: str, keep: int) -> list[str]:
    """Delete the oldest backups in ``directory`` beyond the newest ``keep``; :return: the paths deleted."""
    gone = [os.path.join(directory, n) for n in expired(os.listdir(directory), keep)]
    for path in gone:
        os.unlink(path)
    return gone


def scheduled(source: Source, directory: str, keep: int, now: float, redis: bytes | None = None) -> dict[str, Any]:
    """A cron ``backup`` run: a new backup in ``directory``, then only the newest ``keep`` kept."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = create(source, directory, now, redis=redis)
    return {"path": path, "removed": rotate(directory, keep)}


def summary(head: dict[str, Any]) -> str:
    """What ``backup verify`` prints for a good backup."""
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(head["created_at"]))
    return (f"ok: made {made} by openclaw {head['openclaw']}, store schema {head['schema_version']}, "
            f"files: {', '.join(head['files'])}" + ("" if head.get("with_secrets") else " (no secrets)"))
