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
from openclaw.interfaces import IDrainable, IReconfigurable
from openclaw.periodic import PeriodicService

ROUND = 5_000
MAX_ROUNDS = 20
FIRST_AFTER = 60.0


@implementer(IDrainable, IReconfigurable)
class PruneService(Service):
    """``retention`` 0 keeps everything."""

    def __init__(self, clock: Any, store: Any, retention: float, every: float = 6 * 3600.0) -> None:
        self.clock = clock
        self.store = store
        self.retention = retention
        self.every = every
        #: A pass ``FIRST_AFTER`` seconds after start, then ``every`` after each pass ends
        #: (no pass, and interval ``0``, while ``retention`` is ``0``).
        on = retention > 0
        self.loop = PeriodicService(clock, every if on else 0, self._run, name="prune",
                                    first=FIRST_AFTER if on else None)
        #: What the last pass removed, by kind.
        self.last: dict[str, int] | None = None

    def startService(self) -> None:
        Service.startService(self)
        self.loop.startService()

    def reconfigure(self, config: Any) -> None:
        """A new ``store.retention``: 0 stops pruning; from 0, the first pass comes ``FIRST_AFTER`` later."""
        retention, self.retention = self.retention, config.store.retention
        if retention == self.retention:
            return
        on = self.retention > 0
        self.loop.first = FIRST_AFTER if on else None
        # A pass in flight finishes and the loop goes on (or not) with the new interval.
        self.loop.set_interval(self.every if on else 0, next_in=FIRST_AFTER if on and retention <= 0 else None)

    def _run(self) -> Deferred:
        action = begin("openclaw:store:prune", retention=self.retention)
        with action.context():
            d = DeferredContext(self.prune())
            d.addActionFinish()
        # Logged here, as before the loop: the loop goes on either way.
        return d.result.addErrback(lambda f: log("openclaw:store:prune-failed", level="error", error=repr(f.value)))

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
