"""
The heartbeat service: wakes every ``heartbeat.every`` and records the beat.

Never at boot: the first beat comes one interval after start, so a restart
loop cannot turn into an alert loop.  The checklist, snapshot and brain come
with the proactive engine; this is the loop they will hang on.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from openclaw.eliotutil import log
from openclaw.interfaces import IDrainable
from openclaw.runtime import Runtime


@implementer(IDrainable)
class HeartbeatService(Service):
    """A LoopingCall on the runtime's clock; ``every=0`` disables it."""


    def __init__(self, runtime: Runtime, every: float) -> None:
        self.runtime = runtime
        self.every = every
        self._loop: LoopingCall | None = None
        self._started_at: float | None = None

    def startService(self) -> None:
        Service.startService(self)
        if self.every > 0:
            self._loop = LoopingCall(self.beat)
            self._loop.clock = self.runtime.clock
            self._started_at = self.runtime.clock.seconds()
            self._loop.start(self.every, now=False)
        self.runtime.next_heartbeat = self.next_beat

    def next_beat(self) -> float | None:
        """When the next beat is due, or None when the loop is not running."""
        if self._loop is None or not self._loop.running or self._started_at is None:
            return None
        now = self.runtime.clock.seconds()
        done = int((now - self._started_at) // self.every)
        return self._started_at + (done + 1) * self.every

    def beat(self) -> None:
        # Errors must not escape: an exception would stop the LoopingCall.
        try:
            now = self.runtime.clock.seconds()
            self.runtime.heartbeat(now)
            log("openclaw:heartbeat:beat", sessions=len(self.runtime.sessions))
        except Exception as e:
            log("openclaw:heartbeat:error", level="error", error=repr(e))

    def drain(self) -> Deferred:
        """No new proactive work once shutdown begins."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return succeed(None)

    def hurry(self) -> None:
        pass

    def stopService(self) -> Deferred:
        self.drain()
        Service.stopService(self)
        return succeed(None)
