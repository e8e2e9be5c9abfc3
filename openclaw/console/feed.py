"""
The console's live feed: ``console.subscribe`` connections get a
``console.status`` event whenever the overview changes (checked every
second) and at least every few seconds (uptime, memory, CPU), so every page
stays current without a reload or polling from the browser.
"""

from __future__ import annotations

import resource
from typing import Any, Callable

import orjson
from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from openclaw import __version__, health
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError
from openclaw.runtime import Runtime

#: Fields that change every second: they alone do not make an event.
VOLATILE = ("uptime", "timestamp", "memory", "cpu_seconds")


def overview(runtime: Runtime, tree: Any, log_seq: Callable[[], int]) -> dict[str, Any]:
    """The ``/health`` body plus what only the console shows: version, CPU time, the log's sequence number."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    body = health.report(runtime, health.memory(), tree)[1]
    body.update(version=__version__, cpu_seconds=round(usage.ru_utime + usage.ru_stime, 3), log_seq=log_seq())
    return body


class ConsoleFeed(Service):
    """
    Pushes ``snapshot()`` to subscribed connections; ticks only while
    someone listens.  At most ``limit`` subscribers (each is a browser tab).
    """

    def __init__(self, clock: Any, snapshot: Callable[[], dict[str, Any]], every: float = 1.0,
                 keepalive: float = 5.0, limit: int = 64) -> None:
        self.clock = clock
        self.snapshot = snapshot
        self.every = every
        self.keepalive = keepalive
        self.limit = limit
        self.subscribers: set[Any] = set()
        self._loop: LoopingCall | None = None
        self._steady: bytes | None = None
        self._sent_at = float("-inf")

    def subscribe(self, conn: Any) -> dict[str, Any]:
        """Add ``conn``; :return: the current snapshot (the first event's payload)."""
        if conn not in self.subscribers and len(self.subscribers) >= self.limit:
            raise FrameError(frames.BUSY, f"{self.limit} consoles are open already; close one")
        self.subscribers.add(conn)
        if self._loop is None and self.running:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.clock
            self._loop.start(self.every, now=False)
        return self.snapshot()

    def forget(self, conn: Any) -> None:
        self.subscribers.discard(conn)
        if not self.subscribers:
            self._stop()

    def _tick(self) -> None:
        snap = self.snapshot()
        steady = orjson.dumps({k: v for k, v in snap.items() if k not in VOLATILE}, option=orjson.OPT_SORT_KEYS)
        now = self.clock.seconds()
        if steady == self._steady and now - self._sent_at < self.keepalive:
            return
        self._steady, self._sent_at = steady, now
        data = frames.encode_event("console.status", snap)
        for conn in list(self.subscribers):
            conn.send(data)

    def _stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def stopService(self) -> Any:
        self._stop()
        return super().stopService()
