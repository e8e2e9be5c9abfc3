"""Durable stores behind ``IStore``: SQLite (embedded default) and Redis."""

from __future__ import annotations

import os
from typing import Any

from openclaw.config import StoreConfig


#: Seconds a Redis operation may take before it counts as failed (and is
#: cancelled): txredisapi waits for a lost server instead of failing.
REDIS_OP_TIMEOUT = 5.0


def sqlite_path(config: StoreConfig, home: str) -> str:
    """The SQLite file ``store.url`` names (``<home>/data/openclaw.sqlite3`` when empty)."""
    return config.url[len("sqlite:///"):] if config.url else os.path.join(home, "data", "openclaw.sqlite3")


def make_store(config: StoreConfig, home: str, reactor: Any) -> Any:
    """
    The store ``store.url`` names, behind the guard that keeps its health.
    Redis's client is imported only when configured, so the embedded default
    does not pay for it.  SQLite operations always end (``busy_timeout``),
    and one cancelled on its worker thread would still commit: no deadline.
    """
    from openclaw.store.guard import GuardedStore

    if config.url.startswith("redis://"):
        from openclaw.store.redis import RedisStore

        return GuardedStore(RedisStore(reactor, config.url, config.prefix, config.history), reactor, REDIS_OP_TIMEOUT)
    from openclaw.store.sqlite import SQLiteStore

    return GuardedStore(SQLiteStore(reactor, sqlite_path(config, home), config.history), reactor)
