"""Backups: the pure choices, create/verify/restore on files, and a backup taken during a message stream."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import tarfile
from typing import Any

import orjson

import pytest_twisted
from hypothesis import given, strategies as st
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from openclaw import backup, cli
from openclaw.store.redis import RedisStore
from openclaw.store.sqlite import SCHEMA_VERSION, open_database
from openclaw.system import homelock
from tests import wsclient
from tests.process import DaemonProcess, clean_env
from tests.store_contract import message, reply
from tests.test_cli import OPENCLAW
from tests.test_crash import SESSIONS, TOKEN, Ledger, pump


@given(st.lists(st.integers(0, 2**31), unique=True), st.lists(st.text()), st.integers(0, 20))
def test_retention_keeps_the_newest_and_touches_nothing_else(times, others, keep) -> None:
    ours = sorted({backup.backup_name(t) for t in times})
    names = ours + [n for n in others if not (n.startswith(backup.PREFIX) and n.endswith(backup.SUFFIX))]
    gone = backup.expired(names, keep)
    assert gone == ours[:max(0, len(ours) - keep)]
    assert set(ours) - set(gone) == set(ours[len(ours) - min(keep, len(ours)):])


def _home(tmp_path, token: bool = True) -> tuple[str, str]:
    home = str(tmp_path / "home")
    store = os.path.join(home, "data", "openclaw.sqlite3")
    db = open_database(store)
    db.execute("INSERT INTO state (key, value) VALUES ('k', '\"v\"')")
    db.close()
    with open(os.path.join(home, "HEARTBEAT.md"), "w") as f:
        f.write("- check the disk\n")
    with open(os.path.join(home, "openclaw.yaml"), "w") as f:
        f.write("heartbeat: {every: 1h}\n")
    if token:
        with open(os.path.join(home, "gateway.token"), "w") as f:
            f.write("secret-token")
    return home, store


def test_create_verify_restore_round_trip(tmp_path, capsys) -> None:
    home, _ = _home(tmp_path)
    out = str(tmp_path / "b.tar")
    assert cli.main(["backup", "create", "--home", home, "--to", out]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names == ["manifest.json", "store.sqlite3", "openclaw.yaml", "HEARTBEAT.md"]  # no token
    assert cli.main(["backup", "verify", out]) == 0
    assert "ok: made" in capsys.readouterr().out
    fresh = str(tmp_path / "fresh")
    assert cli.main(["backup", "restore", out, "--home", fresh]) == 0
    db = sqlite3.connect(os.path.join(fresh, "data", "openclaw.sqlite3"))
    assert db.execute("SELECT value FROM state WHERE key = 'k'").fetchone() == ('"v"',)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()
    assert open(os.path.join(fresh, "HEARTBEAT.md")).read() == "- check the disk\n"
    assert not os.path.exists(os.path.join(fresh, "gateway.token"))


def test_the_token_only_with_secrets_and_a_directory_gets_a_timestamped_name(tmp_path) -> None:
    home, store = _home(tmp_path)
    target = tmp_path / "backups"
    target.mkdir()
    source = backup.sources(home, store, os.path.join(home, "openclaw.yaml"), with_secrets=True)
    path = backup.create(source, str(target), 1_700_000_000.0, with_secrets=True)
    assert os.path.basename(path) == "openclaw-backup-20231114T221320Z.tar"
    head, members = backup.read(path)
    assert members["gateway.token"] == b"secret-token" and head["with_secrets"] is True
    assert os.listdir(target) == [os.path.basename(path)]  # no temporary file left


def test_verify_finds_a_changed_member_and_junk(tmp_path, capsys) -> None:
    home, _ = _home(tmp_path)
    out = str(tmp_path / "b.tar")
    assert cli.main(["backup", "create", "--home", home, "--to", out]) == 0
    with tarfile.open(out) as tar:
        members = {i.name: tar.extractfile(i).read() for i in tar.getmembers()}
    members["HEARTBEAT.md"] = b"- something else\n"
    bad = str(tmp_path / "bad.tar")
    with tarfile.open(bad, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert cli.main(["backup", "verify", bad]) == 1
    assert "HEARTBEAT.md in" in capsys.readouterr().err
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    assert cli.main(["backup", "verify", str(tmp_path / "junk.tar")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("openclaw: backup: cannot read") and "Traceback" not in err


def test_restore_is_refused_while_a_daemon_holds_the_home(tmp_path, capsys) -> None:
    home, store = _home(tmp_path)
    out = str(tmp_path / "b.tar")
    assert cli.main(["backup", "create", "--home", home, "--to", out]) == 0
    fd = homelock.acquire(home)
    try:
        assert cli.main(["backup", "restore", out, "--home", home]) == 1
    finally:
        os.close(fd)
    assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert cli.main(["backup", "restore", out, "--home", home]) == 0  # the lock is gone


def canonical(entries: list) -> dict:
    """An export with Redis's orderless types made comparable (hash fields, set members)."""
    def value(kind: str, v: Any) -> Any:
        if kind == "hash":
            return dict(zip(v[::2], v[1::2]))
        return sorted(v) if kind == "set" else v
    return {key: (kind, value(kind, v)) for key, kind, v in entries}


@pytest_twisted.inlineCallbacks
def test_redis_export_and_import_cover_every_key_under_the_prefix_only(redis_server) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    source, target = RedisStore(reactor, url, "a:", 5), RedisStore(reactor, url, "b:", 5)
    yield source.startService()
    yield target.startService()
    try:
        event = message(session="s1", text="hello")
        yield source.record_inbound(event)
        yield source.complete_inbound(event.id, [reply(event, "hi back")])
        yield source.set_state("k", {"v": 1.5})
        yield source.append_journal("alert", 12.25, {"what": "disk"})
        yield target.set_state("stale", 1)
        exported = yield source.export()
        assert exported and all(not key.startswith("a:") for key, _, _ in exported)
        assert (yield target.import_keys(orjson.loads(orjson.dumps(exported)))) == len(exported)
        assert (yield target.get_state("stale")) is None
        assert (yield target.get_state("k")) == {"v": 1.5}
        assert [m["text"] for m in (yield target.history("s1", 10))] == ["hello", "hi back"]
        assert (yield target.journal("alert", 0.0)) == (yield source.journal("alert", 0.0))
        assert (yield target.outbox_counts()) == (yield source.outbox_counts())
        assert canonical((yield target.export())) == canonical(exported)
        assert (yield source.get_state("k")) == {"v": 1.5}  # the source is untouched
    finally:
        yield source.stopService()
        yield target.stopService()


def test_the_cli_backs_up_and_restores_a_redis_store(tmp_path, redis_server) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "openclaw.yaml").write_text(f'store: {{url: "redis://127.0.0.1:{redis_server.port}/0", prefix: "p:"}}\n')
    redis = ["redis-cli", "-p", str(redis_server.port)]
    subprocess.run([*redis, "hset", "p:state", "k", '"v"'], check=True, capture_output=True)
    subprocess.run([*redis, "set", "other:key", "x"], check=True, capture_output=True)
    out = str(tmp_path / "r.tar")
    run = lambda *a: subprocess.run([OPENCLAW, "backup", *a, "--home", str(home)], capture_output=True, text=True,
                                    timeout=60, env=clean_env())
    made = run("create", "--to", out)
    assert made.returncode == 0, made.stderr
    with tarfile.open(out) as tar:
        assert "redis.json" in tar.getnames() and "store.sqlite3" not in tar.getnames()
    subprocess.run([*redis, "hset", "p:state", "k", '"changed"'], check=True, capture_output=True)
    subprocess.run([*redis, "set", "p:extra", "1"], check=True, capture_output=True)
    done = run("restore", out)
    assert done.returncode == 0, done.stderr
    get = lambda *a: subprocess.run([*redis, *a], capture_output=True, text=True).stdout.strip()
    assert get("hget", "p:state", "k") == '"v"' and get("exists", "p:extra") == "0" and get("get", "other:key") == "x"


@pytest_twisted.inlineCallbacks
def test_a_backup_during_a_message_stream_restores_every_acknowledged_message(tmp_path) -> None:
    daemon = DaemonProcess(tmp_path, str(tmp_path / "home"), OPENCLAW_GATEWAY_TOKEN=TOKEN)
    out = str(tmp_path / "stream.tar")
    ledger = Ledger()
    try:
        daemon.start()
        stream = pump(daemon.gateway, ledger, ledger.new_messages(200))
        first = pump(daemon.gateway, ledger, ledger.new_messages(20))
        yield first  # some are acknowledged (and answered) before the backup starts
        acked_before = dict(ledger.acked)
        code = yield deferToThread(cli.main, ["backup", "create", "--home", daemon.home, "--to", out])
        assert code == 0
        yield stream
        # Refused while the daemon runs.
        assert (yield deferToThread(cli.main, ["backup", "restore", out, "--home", daemon.home])) == 1
        assert daemon.stop()[0] == 0
    finally:
        daemon.ensure_dead()
    assert len(ledger.acked) == 220 and len(acked_before) >= 20
    fresh = DaemonProcess(tmp_path / "fresh-run", str(tmp_path / "fresh"), OPENCLAW_GATEWAY_TOKEN=TOKEN)
    os.makedirs(fresh.tmp_path)
    assert cli.main(["backup", "restore", out, "--home", fresh.home]) == 0
    restored = Ledger()
    restored.acked = acked_before
    try:
        fresh.start()
        # Messages acknowledged before the backup and answered after it are
        # answered again by the restored daemon (they were still 'received').
        yield pump(fresh.gateway, restored, [], catch_up=True).addTimeout(30, reactor)
        client = yield wsclient.connect(fresh.gateway, TOKEN)
        history = {}
        for session in SESSIONS:
            reply = yield client.request("chat.history", {"session": session, "limit": 500})
            history[session] = reply["payload"]["messages"]
        yield client.close()
        assert fresh.stop()[0] == 0
    finally:
        fresh.ensure_dead()
    users = {m["event_id"] for ms in history.values() for m in ms if m["role"] == "user"}
    answered = {m["event_id"] for ms in history.values() for m in ms if m["role"] == "assistant"}
    assert set(acked_before.values()) <= users
    assert set(acked_before.values()) <= answered


@pytest_twisted.inlineCallbacks
def test_the_daemons_backup_job_on_sqlite_and_redis(tmp_path, redis_server) -> Any:
    from types import SimpleNamespace

    from openclaw.config import build_config
    from openclaw.config.proactive import CronConfig
    from openclaw.proactive.engine import _backup_job

    home, _ = _home(tmp_path)
    job = CronConfig(name="b", schedule="0 3 * * *", action="backup", keep=1, to=str(tmp_path / "out"))
    runtime = SimpleNamespace(config_path=os.path.join(home, "openclaw.yaml"))
    made = yield _backup_job(build_config(), home, reactor, runtime, None)(job)
    head, members = backup.read(made["path"])
    assert set(members) == {"store.sqlite3", "openclaw.yaml", "HEARTBEAT.md"} and made["removed"] == []
    config = build_config({"store": {"url": f"redis://127.0.0.1:{redis_server.port}/0", "prefix": "j:"}})
    redis = RedisStore(reactor, config.store.url, "j:", 5)
    yield redis.startService()
    try:
        yield redis.set_state("k", 1)
        again = yield _backup_job(config, home, reactor, runtime, SimpleNamespace(store=redis))(job)
    finally:
        yield redis.stopService()
    _, members = backup.read(again["path"])
    assert "redis.json" in members and "store.sqlite3" not in members
    assert os.listdir(tmp_path / "out") == [os.path.basename(again["path"])]  # keep 1
