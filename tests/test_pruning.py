"""Pruning on a deterministic clock against a real SQLite store."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.task import Clock

from openclaw import metrics
from openclaw.store import pruning
from openclaw.store.pruning import PruneService
from tests.store_contract import message

DAY = 86400.0


def pruned(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_store_pruned_total", {"kind": kind}) or 0.0



@pytest_twisted.inlineCallbacks
def test_old_finished_rows_go_a_minute_after_start_then_every_period(store, monkeypatch) -> None:
    monkeypatch.setattr(pruning, "ROUND", 2)  # several rounds in one pass
    clock = Clock()
    clock.advance(100 * DAY)
    old = [message(timestamp=clock.seconds() - 40 * DAY, platform_id=n) for n in range(5)]
    fresh = message(timestamp=clock.seconds() - DAY, platform_id="fresh")
    for event in [*old, fresh]:
        yield store.record_inbound(event)
        yield store.complete_inbound(event.id, [])
    yield store.append_journal("heartbeat", clock.seconds() - 31 * DAY, {})
    before = pruned("inbound")
    service = PruneService(clock, store, retention=30 * DAY, every=3600.0)
    service.startService()
    clock.advance(59)
    assert not service.loop.busy and (yield store.inbound_state(old[0].id)) == "done"
    clock.advance(1)
    yield service.loop.current()
    assert service.last == {"outbox": 0, "inbound": 5, "journal": 1}
    assert pruned("inbound") == before + 5
    assert (yield store.inbound_state(fresh.id)) == "done"
    assert [c.getTime() - clock.seconds() for c in clock.getDelayedCalls()] == [3600.0]
    yield service.stopService()
    assert clock.getDelayedCalls() == []


def test_zero_retention_prunes_nothing() -> None:
    clock = Clock()
    service = PruneService(clock, store=None, retention=0)
    service.startService()
    assert clock.getDelayedCalls() == []
