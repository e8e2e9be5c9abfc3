"""
Pruning: keeps a months-long run from growing the store without bound.

``every`` seconds after the previous pass ended (the first a minute after
start, not during the startup rush) it deletes sent outbox rows, finished inbound events and
journal records older than ``store.retention``, in bounded rounds so no one
transaction holds the writer for long.  History is bounded per session
already; pending work and failed outbox rows are never pruned.
"""

from __future__ import annotations

from typing import Any

from eliot.twisted import DeferredContext
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from zope.interface import implementer

from openclaw import metrics
from openclaw.eliotutil import begin, log
from openclaw.interfaces import IDrainable
from openclaw.periodic import PeriodicService

ROUND = 5_000
MAX_ROUNDS = 20
FIRST_AFTER = 60.0


@implementer(IDrainable)
class PruneService(Service):
    """``retention`` 0 keeps everything."""

    def __init__(self, clock: Any, store: Any, retention: float, every: float = 6 * 3600.0) -> None:
        self.clock = clock
        self.store = store
        self.retention = retention
        #: A pass ``FIRST_AFTER`` seconds after start, then ``every`` after each pass ends.
        self.loop = PeriodicService(clock, every, self._run, name="prune", first=FIRST_AFTER)
        #: What the last pass removed, by kind.
        self.last: dict[str, int] | None = None

    def startService(self) -> None:
        Service.startService(self)
        if self.retention > 0:
            self.loop.startService()

    def _run(self) -> Deferred:
        action = begin("openclaw:store:prune", retention=self.retention)
        with action.context():
            d = DeferredContext(self.prune())
            d.addActionFinish()
        return d.result

    @inlineCallbacks
    def prune(self) -> Any:
        """One pass: rounds of at most ``ROUND`` rows per kind until little is left."""
        before = self.clock.seconds() - self.retention
        total = {"outbox": 0, "inbound": 0, "journal": 0}
        for _ in range(MAX_ROUNDS):
            removed = yield self.store.prune(before, ROUND)
            for kind, n in removed.items():
                total[kind] += n
                metrics.store_pruned.labels(kind).inc(n)
            if max(removed.values()) < ROUND:
                break
        log("openclaw:store:pruned", **total)
        self.last = total
        return total

    def drain(self) -> Deferred:
        return self.loop.stopService()

    def hurry(self) -> None:
        pass

    def stopService(self) -> Deferred:
        Service.stopService(self)
        return self.drain()
