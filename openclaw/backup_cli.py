"""
``openclaw backup create|verify|restore``: works on the home's files
directly (SQLite's online backup and the Redis export are safe while the
daemon runs; a restore is refused while one runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable

import orjson
from twisted.internet.defer import Deferred, maybeDeferred

from openclaw import backup
from openclaw.config.loading import config_path, default_home, load_config, HOME_CONFIG
from openclaw.store import sqlite_path


def _home(args: argparse.Namespace) -> str:
    return os.path.abspath(os.path.expanduser(args.home or default_home()))


def _on_redis(config: Any, work: Callable[[Any], Any]) -> Any:
    """Run ``work(store)`` against the configured Redis store; :return: its result (or raise its error)."""
    from openclaw.chat_cli import _react
    from openclaw.store.redis import RedisStore

    outcome: dict[str, Any] = {}

    def run(reactor: Any) -> Deferred:
        store = RedisStore(reactor, config.store.url, config.store.prefix, config.store.history)
        d = maybeDeferred(store.startService)
        d.addCallback(lambda _: work(store))
        d.addCallbacks(lambda result: outcome.update(result=result), lambda f: outcome.update(error=f.value))
        d.addBoth(lambda _: store.stopService())
        return d

    _react(run)
    if "error" in outcome:
        raise backup.BackupError(f"backup: Redis: {outcome['error']}")
    return outcome["result"]


def cmd_backup(args: argparse.Namespace) -> int:
    home = _home(args)
    try:
        if args.action == "verify":
            head, _ = backup.read(args.path)
            print(backup.summary(head))
            return 0
        path = config_path(args.config, home)
        config = load_config(path)
        on_redis = config.store.url.startswith("redis://")
        store = "" if on_redis else sqlite_path(config.store, home)
        if args.action == "create":
            source = backup.sources(home, store, path, args.with_secrets)
            exported = orjson.dumps(_on_redis(config, lambda s: s.export())) if on_redis else None
            to = args.to or os.path.join(home, "backups")
            if args.to is None:
                os.makedirs(to, mode=0o700, exist_ok=True)
            print(f"wrote {backup.create(source, to, time.time(), args.with_secrets, redis=exported)}")
            return 0
        head, members = backup.read(args.path)
        if on_redis != (backup.REDIS in members):
            raise backup.BackupError(f"backup: {args.path} holds a {'Redis' if backup.REDIS in members else 'SQLite'} "
                                     f"store but the config names {'Redis' if on_redis else 'SQLite'}")
        with backup.home_locked(home):
            written = backup.put(head, members, args.path, home, store, path or os.path.join(home, HOME_CONFIG))
            if on_redis:
                count = _on_redis(config, lambda s: s.import_keys(orjson.loads(members[backup.REDIS])))
                written.append(f"{count} Redis keys under {config.store.prefix!r}")
        for item in written:
            print(f"restored {item}")
        return 0
    except (backup.BackupError, OSError) as e:
        print(f"openclaw: {e}", file=sys.stderr)
        return 1


def add_backup_parser(sub: Any) -> None:
    """``backup create|verify|restore``."""
    parser = sub.add_parser("backup", help="back up the store, config and HEARTBEAT.md; verify or restore one")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="write a backup (safe while the daemon runs)")
    create.add_argument("--to", help="a file or directory (default: <home>/backups/)")
    create.add_argument("--with-secrets", action="store_true", help="include the gateway token")
    verify = actions.add_parser("verify", help="check a backup's checksums and its store's integrity")
    verify.add_argument("path")
    restore = actions.add_parser("restore", help="put a backup back into the home (the daemon must be stopped)")
    restore.add_argument("path")
    for p in (create, verify, restore):
        p.add_argument("--home", help="the daemon's home (default: $OPENCLAW_HOME, else ~/.openclaw)")
        p.add_argument("--config", help="YAML config file (default: $OPENCLAW_CONFIG, else <home>/openclaw.yaml)")
        p.set_defaults(func=cmd_backup)
