"""
A service of the tree that runs only while this instance holds a lease.

``Gated(child, cluster, lease)`` takes the child's place in the tree (its
name, its interfaces: status, reload and drain reach the child through it)
and starts the child when the lease is acquired, stops it when the lease is
lost.  The tree's start only says the child is *wanted*; the lease says
whether it runs here.  The gate watches the lease from its start to its
stop, so a connector a reload removes lets its lease go.  A child is started again on a later acquisition, so
it must start from the store's record, not from memory (cron does).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from zope.interface import directlyProvides, providedBy

from openclaw.cluster.keeper import TIMER_SKIPPED
from openclaw.eliotutil import log

from openclaw.interfaces import IDrainable


class Gated(Service):
    """:param standby: called once the child stopped because the lease was lost (a connector's gauges)."""

    def __init__(self, child: Any, cluster: Any, lease: str, standby: Callable[[], None] = lambda: None) -> None:
        self.child = child
        self.lease = lease
        self.cluster = cluster
        self.standby = standby
        if getattr(child, "name", None):
            self.setName(child.name)
        directlyProvides(self, *providedBy(child))

    def __getattr__(self, name: str) -> Any:
        # Only for what this class lacks: the child's status, methods and attributes.
        if name == "child":
            raise AttributeError(name)
        return getattr(self.child, name)

    @property
    def active(self) -> bool:
        """Whether the child runs here now."""
        return bool(self.child.running)

    def setName(self, name: str) -> None:
        Service.setName(self, name)
        if not self.child.running and getattr(self.child, "name", None) != name:
            self.child.name = name

    def _acquired(self) -> None:
        if self.running and not self.child.running:
            self.child.startService()

    def _lost(self) -> Deferred:
        return self._stop_child().addCallback(lambda _: self.standby())

    def _stop_child(self) -> Deferred:
        if not self.child.running:
            return succeed(None)
        return maybeDeferred(self.child.stopService)

    def startService(self) -> None:
        Service.startService(self)
        self.cluster.lease(self.lease, self._acquired, self._lost)  # calls _acquired when already held

    def problems(self) -> list[str]:
        return self.child.problems() if self.child.running else []

    def drain(self) -> Deferred:
        return self.child.drain() if self.child.running and IDrainable.providedBy(self.child) else succeed(None)

    def hurry(self) -> None:
        if self.child.running and IDrainable.providedBy(self.child):
            self.child.hurry()

    def stopService(self) -> Deferred:
        Service.stopService(self)
        d = self._stop_child()
        return d.addCallback(lambda _: self.cluster.unlease(self.lease, self._acquired, self._lost))


class HeldClock:
    """
    A clock whose timed calls run only while ``held()``: the timers of the
    scheduler's work (checks, cron).  A process that wakes from a pause runs
    every overdue timer at once, in due order, possibly before the lease's own
    step-down timer; a timer of this clock that comes first finds the lease
    untrusted and does nothing (the work is being stopped anyway).
    """

    def __init__(self, clock: Any, held: Callable[[], bool]) -> None:
        self.clock = clock
        self.held = held

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return self.clock.callLater(delay, self._if_held, f, args, kw)

    def _if_held(self, f: Callable[..., Any], args: tuple, kw: dict) -> Any:
        if self.held():
            return f(*args, **kw)
        log(TIMER_SKIPPED, level="warn", call=getattr(f, "__qualname__", repr(f)))
        return None

    def getDelayedCalls(self) -> list[Any]:
        return self.clock.getDelayedCalls()
