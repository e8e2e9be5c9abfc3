"""Durable stores behind ``IStore``: SQLite (embedded default) and Redis."""

from __future__ import annotations

import os
from typing import Any

from openclaw.config import StoreConfig


def make_store(config: StoreConfig, home: str, reactor: Any) -> Any:
    """
    The store ``store.url`` names.  Redis's client is imported only when
    configured, so the embedded default does not pay for it.
    """
    if config.url.startswith("redis://"):
        from openclaw.store.redis import RedisStore

        return RedisStore(reactor, config.url, config.prefix, config.history)
    from openclaw.store.sqlite import SQLiteStore

    path = config.url[len("sqlite:///"):] if config.url else os.path.join(home, "data", "openclaw.sqlite3")
    return SQLiteStore(reactor, path, config.history)
