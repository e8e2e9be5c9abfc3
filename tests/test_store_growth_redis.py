"""
Costs independent of history size (Redis): the periodic and per-message
paths issue no ``KEYS``/``SCAN`` (read from the test's own server's
``INFO commandstats``, which counts the commands scripts run too), outbox
counts come from the counters the scripts keep, and pruning is bounded.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from openclaw.outbox import OutboxService
from openclaw.store.redis import RedisStore
from tests.store_contract import message, reply


def redis_cli(server: Any, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(server.port), *args], capture_output=True, check=True,
                          text=True).stdout


def commands(server: Any) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT``."""
    counts = {}
    for line in redis_cli(server, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            counts[name] = int(dict(f.split("=") for f in fields.split(","))["calls"])
    return counts


@pytest_twisted.inlineCallbacks
def test_message_path_outbox_passes_and_pruning_issue_no_keys_or_scan(redis_server) -> Any:
    store = RedisStore(reactor, f"redis://127.0.0.1:{redis_server.port}/0", "t:", history=5)
    yield store.startService()
    delivered = []
    outbox = OutboxService(reactor, store, {"telegram": lambda item: delivered.append(item.id) or True},
                           poll_every=3600)
    try:
        # A history: answered and sent messages, then the traffic measured.
        for i in range(60):
            event = message(session=f"s{i % 7}", text=f"m{i}", platform_id=i, timestamp=float(i))
            yield store.record_inbound(event)
            yield store.complete_inbound(event.id, [reply(event, text=f"r{i}", created_at=float(i))])
        redis_cli(redis_server, "CONFIG", "RESETSTAT")
        outbox.startService()
        for i in range(60, 80):
            event = message(session=f"s{i % 7}", text=f"m{i}", platform_id=i, timestamp=float(i))
            yield store.record_inbound(event)
            yield store.complete_inbound(event.id, [reply(event, text=f"r{i}", created_at=float(i))])
            yield outbox.kick()
        yield outbox.kick()
        assert (yield store.outbox_counts()) == {"pending": 0, "sent": 80, "failed": 0}
        assert (yield store.prune(30.0, 10)) == {"outbox": 10, "inbound": 10, "journal": 0}
        yield store.message_counts(0.0, 100.0)
        yield store.append_journal("startup", 1.0, {})
        seen = commands(redis_server)
        assert seen.get("evalsha", 0) + seen.get("eval", 0) >= 40  # the statistics do see the scripts' work
        assert seen.get("zrangebyscore", 0) > 0
        assert {name: n for name, n in seen.items() if name in ("keys", "scan")} == {}
        assert len(delivered) == 80
    finally:
        yield outbox.stopService()
        yield store.stopService()


@pytest_twisted.inlineCallbacks
def test_pruning_is_bounded_per_round_and_counts_stay_right(redis_server) -> Any:
    store = RedisStore(reactor, f"redis://127.0.0.1:{redis_server.port}/0", "t:", history=5)
    yield store.startService()
    try:
        for i in range(25):
            event = message(session="s", text=f"m{i}", platform_id=i, timestamp=float(i))
            yield store.record_inbound(event)
            ids = yield store.complete_inbound(event.id, [reply(event, text=f"r{i}", created_at=float(i))])
            yield store.mark_sent(ids[0])
            yield store.append_journal("k", float(i), {"i": i})
        rounds = []
        while True:
            removed = yield store.prune(1e12, 10)
            rounds.append(removed)
            if max(removed.values()) < 10:
                break
        assert [r["outbox"] for r in rounds] == [10, 10, 5]
        assert [r["journal"] for r in rounds] == [10, 10, 5]
        assert [r["inbound"] for r in rounds] == [10, 10, 5]
        assert (yield store.outbox_counts()) == {"pending": 0, "sent": 0, "failed": 0}
    finally:
        yield store.stopService()
