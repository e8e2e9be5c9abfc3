"""
Per-session lanes: the events of one session are handled strictly in
arrival order, one at a time; different sessions run concurrently up to a
limit.  When a slot frees, the waiting lane whose next item has the highest
priority (chat, then system, then heartbeat work) goes first, oldest first
within a priority.

Each lane's queue is bounded: ``submit`` refuses an item past the bound and
the caller answers the sender "busy, try again" (nothing is dropped
silently; the event is already durable and done or failed explicitly).
The pipeline's admission (``openclaw.admission``) refuses before recording,
so this bound is met only when a reload lowered it or by replays (forced).
Idle lanes are collected after ``idle_after`` seconds and re-created on
demand.  Only moving items and time happens here: handling is the
``handler``'s job.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime

from openclaw import metrics
from openclaw.eliotutil import log, message_type, typed

CHAT, SYSTEM, HEARTBEAT = 0, 1, 2

SESSION_ID = typed("session_id", [str], "the lane's session")
LANES_OVERFLOW = message_type("openclaw:lanes:overflow", [
    SESSION_ID, typed("depth", [int], "events waiting in the lane"),
], "a lane was full: the sender was told busy", "warn")
LANES_HANDLER_ERROR = message_type("openclaw:lanes:handler-error", [
    SESSION_ID, typed("error", [str], "the handler's failure"),
], "a bug: an event's handler failed (the lane goes on)", "error")
LANES_COLLECTED = message_type("openclaw:lanes:collected", [
    typed("count", [int], "idle lanes removed"), typed("remaining", [int], "lanes left"),
], "idle lanes were collected", "debug")


class _Lane:
    __slots__ = ("session_id", "queue", "running", "last_active")

    def __init__(self, session_id: str, now: float) -> None:
        self.session_id = session_id
        self.queue: deque[tuple[int, int, Any]] = deque()
        self.running = False
        self.last_active = now


class Lanes:
    """The lanes of every session, sharing ``max_concurrent`` slots."""

    def __init__(
        self,
        clock: IReactorTime,
        handler: Callable[[str, Any], Any],
        max_concurrent: int = 8,
        max_queue: int = 100,
        idle_after: float = 24 * 3600.0,
    ) -> None:
        self.clock = clock
        self.handler = handler
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.idle_after = idle_after
        self._lanes: dict[str, _Lane] = {}
        self._ready: list[tuple[int, int, str]] = []
        self._order = itertools.count()
        self._running = 0
        self._idle_waiters: list[Deferred] = []
        self._sweep: Any = None
        self._paused = False

    def submit(self, session_id: str, item: Any, priority: int = CHAT, force: bool = False) -> bool:
        """
        Queue ``item`` on the session's lane; ``force`` ignores the bound
        (for replaying events that were already accepted).

        :return: False when the lane is full (the item was not queued).
        """
        lane = self._lanes.get(session_id)
        if lane is None:
            lane = self._lanes[session_id] = _Lane(session_id, self.clock.seconds())
            metrics.active_sessions.set(len(self._lanes))
            self._schedule_sweep()
        if len(lane.queue) >= self.max_queue and not force:
            log(LANES_OVERFLOW, level="warn", session_id=session_id, depth=len(lane.queue))
            metrics.lane_overflows.inc()
            return False
        was_waiting = bool(lane.queue)
        lane.queue.append((priority, next(self._order), item))
        metrics.lane_depth.inc()
        if not lane.running and not was_waiting:
            self._make_ready(lane)
        self._dispatch()
        return True

    def depth(self) -> int:
        """Items queued (not yet running) over all lanes."""
        return sum(len(lane.queue) for lane in self._lanes.values())

    def running(self) -> int:
        return self._running

    def __len__(self) -> int:
        return len(self._lanes)

    def _make_ready(self, lane: _Lane) -> None:
        priority, order, _ = lane.queue[0]
        heapq.heappush(self._ready, (priority, order, lane.session_id))

    def _dispatch(self) -> None:
        while self._ready and self._running < self.max_concurrent and not self._paused:
            _, _, session_id = heapq.heappop(self._ready)
            lane = self._lanes[session_id]
            _, _, item = lane.queue.popleft()
            metrics.lane_depth.dec()
            lane.running = True
            self._running += 1
            d = maybeDeferred(self.handler, session_id, item)
            d.addErrback(self._handler_failed, session_id)
            d.addBoth(self._finished, lane)

    def _handler_failed(self, failure: Any, session_id: str) -> None:
        # The handler owns its errors; one escaping must not stop the lane.
        log(LANES_HANDLER_ERROR, level="error", session_id=session_id,
            error=failure.getErrorMessage())

    def _finished(self, _: Any, lane: _Lane) -> None:
        lane.running = False
        lane.last_active = self.clock.seconds()
        self._running -= 1
        if lane.queue:
            self._make_ready(lane)
        self._dispatch()
        if self._idle():
            self.release_waiters()

    def _idle(self) -> bool:
        return self._running == 0 and (self._paused or not self._ready)

    def pause(self) -> None:
        """Start nothing new (draining); queued items stay queued."""
        self._paused = True

    def release_waiters(self) -> None:
        """Fire every ``until_idle`` now, idle or not (a hurried drain stops waiting)."""
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)

    def until_idle(self) -> Deferred:
        """Fires when nothing runs and (unless paused) nothing waits."""
        if self._idle():
            return succeed(None)
        d = Deferred()
        self._idle_waiters.append(d)
        return d

    def _schedule_sweep(self) -> None:
        if self._sweep is None or not self._sweep.active():
            self._sweep = self.clock.callLater(self.idle_after, self.collect_idle)

    def collect_idle(self) -> int:
        """Forget lanes idle for ``idle_after``; return how many went."""
        now = self.clock.seconds()
        idle = [
            sid for sid, lane in self._lanes.items()
            if not lane.running and not lane.queue and now - lane.last_active >= self.idle_after
        ]
        for sid in idle:
            del self._lanes[sid]
        metrics.active_sessions.set(len(self._lanes))
        if idle:
            log(LANES_COLLECTED, level="debug", count=len(idle), remaining=len(self._lanes))
        self._sweep = None
        if self._lanes:
            oldest = min(lane.last_active for lane in self._lanes.values())
            self._sweep = self.clock.callLater(max(1.0, oldest + self.idle_after - now), self.collect_idle)
        return len(idle)

    def stop(self) -> None:
        """Cancel the idle sweep (the service is stopping)."""
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
