"""
``openclaw backup create|verify|restore``: works on the home's files
directly (the store's online backup is safe while the daemon runs; a
restore is refused while one runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from openclaw import backup
from openclaw.config.loading import config_path, default_home, load_config, HOME_CONFIG
from openclaw.store import sqlite_path


def _home(args: argparse.Namespace) -> str:
    return os.path.abspath(os.path.expanduser(args.home or default_home()))


def cmd_backup(args: argparse.Namespace) -> int:
    home = _home(args)
    try:
        if args.action == "verify":
            head, _ = backup.read(args.path)
            print(backup.summary(head))
            return 0
        path = config_path(args.config, home)
        config = load_config(path)
        if config.store.url.startswith("redis://"):
            print("openclaw: backup of a Redis store is not supported by this command; use the server's own "
                  "RDB/AOF snapshots (see docs/storage.md)", file=sys.stderr)
            return 1
        store = sqlite_path(config.store, home)
        if args.action == "create":
            source = backup.sources(home, store, path, args.with_secrets)
            to = args.to or os.path.join(home, "backups")
            if args.to is None:
                os.makedirs(to, mode=0o700, exist_ok=True)
            print(f"wrote {backup.create(source, to, time.time(), args.with_secrets)}")
            return 0
        for written in backup.restore(args.path, home, store, path or os.path.join(home, HOME_CONFIG)):
            print(f"restored {written}")
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
