"""
The outbox sender: delivers pending outbox rows through the deliverer of
their channel, marks them sent, retries failures with exponential backoff,
and gives up after ``max_attempts`` into a visible ``failed`` state.

A row is marked sent only after its deliverer said it was delivered, so a
crash in between sends it again on restart (at least once); deliverers pass
``item.dedupe_key`` / ``reply_to`` to receivers that can drop repeats.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any, Callable

from eliot import Action
from eliot.twisted import DeferredContext, inline_callbacks
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from openclaw import metrics
from openclaw.backoff import backoff_policy
from openclaw.eliotutil import log
from openclaw.events import OutboxItem
from openclaw.interfaces import IDrainable
from openclaw.periodic import PeriodicService

# Eliot task ids kept for replies not yet delivered (oldest dropped first).
MAX_REMEMBERED_TASKS = 10_000

# deliver(item) -> Deferred[bool]: True delivered, False nobody to deliver to yet.
Deliverer = Callable[[OutboxItem], Any]

RETRY_BASE = 2.0
RETRY_CAP = 300.0
RETRY_JITTER = 0.2
"""A failed delivery is retried after 1.6-2 s, 3.2-4 s, 6.4-8 s ... at most 5 minutes."""


@implementer(IDrainable)
class OutboxService(Service):
    """Polls the store for due rows; ``kick()`` makes it look at once."""

    def __init__(
        self, clock: IReactorTime, store: Any, deliverers: dict[str, Deliverer],
        max_attempts: int = 8, poll_every: float = 5.0, batch: int = 100,
        counts: dict[str, int] | None = None, rand: Callable[[], float] = random.random,
    ) -> None:
        self.clock = clock
        self.counts = counts if counts is not None else {}
        self.store = store
        self.deliverers = deliverers
        self.max_attempts = max_attempts
        self.batch = batch
        self.backoff = backoff_policy(RETRY_BASE, RETRY_CAP, jitter=RETRY_JITTER, rand=rand)
        #: The poll: a pass at start, then ``poll_every`` after each pass ends.
        self.loop = PeriodicService(clock, poll_every, self._pass, name="outbox", first=0)
        self._tasks: OrderedDict[str, str] = OrderedDict()

    def startService(self) -> None:
        Service.startService(self)
        self.loop.startService()

    def kick(self) -> Deferred:
        """
        Deliver what is due now.  Calls made while a pass runs coalesce into
        one more pass after it.  :return: a Deferred firing when the pass
        running now, or else started now, is over (once draining: at once,
        with no pass).  The pipeline's lanes wait on it: waiting for the pass
        after the one running would hold a lane for up to two passes, and
        ``bench/pipeline.py`` answered fewer messages per second that way.
        """
        if self.loop.stopped:
            return succeed(None)
        running = self.loop.current()
        started = self.loop.call_soon()
        return started if running is None else running

    @inlineCallbacks
    def _pass(self) -> Any:
        """One pass; a failure is logged by the loop and the next poll tries again."""
        items = yield self.store.due_outbox(self.clock.seconds(), self.batch)
        # Sessions in parallel (their store writes then share commits),
        # each session's messages one after another, in order.
        by_session: dict[str, list[OutboxItem]] = {}
        for item in items:
            by_session.setdefault(item.session_id, []).append(item)
        yield gatherResults([self._deliver_in_order(queue) for queue in by_session.values()])
        counts = yield self.store.outbox_counts()
        self.counts.update(counts)
        metrics.outbox_pending.set(counts["pending"])
        metrics.outbox_failed.set(counts["failed"])

    @inlineCallbacks
    def _deliver_in_order(self, items: list[OutboxItem]) -> Any:
        for item in items:
            yield self._deliver(item)

    def remember_task(self, reply_to: str, task_id: str) -> None:
        """
        Tie a reply's delivery to the Eliot task of the message it answers,
        so ``eliot-tree`` shows receive -> brain -> send as one tree.
        """
        self._tasks[reply_to] = task_id
        while len(self._tasks) > MAX_REMEMBERED_TASKS:
            self._tasks.popitem(last=False)

    def _deliver(self, item: OutboxItem) -> Deferred:
        task = self._tasks.pop(item.reply_to, None) if item.reply_to else None
        if task is None:
            return self._attempt(item)
        action = Action.continue_task(task_id=task, action_type="openclaw:outbox:deliver", log_level="info",
                                      outbox_id=item.id, channel=item.channel)
        action.add_success_fields(log_level="info")
        with action.context():
            d = DeferredContext(self._attempt(item))
            d.addActionFinish()
        return d.result

    @inline_callbacks
    def _attempt(self, item: OutboxItem) -> Any:
        deliver = self.deliverers.get(item.channel)
        try:
            if deliver is None:
                raise LookupError(f"no deliverer for channel {item.channel!r}")
            delivered = yield deliver(item)
        except Exception as e:
            yield self._failed(item, repr(e))
            return
        if delivered:
            yield self.store.mark_sent(item.id)
            metrics.outbox_sent.labels(item.channel).inc()
            log("openclaw:outbox:sent", level="debug", session_id=item.session_id, outbox_id=item.id,
                length=len(item.text), attempts=item.attempts + 1)
        # Not delivered and no error: nobody to deliver to yet; stays pending.

    def _failed(self, item: OutboxItem, error: str) -> Deferred:
        attempts = item.attempts + 1
        if attempts >= self.max_attempts:
            log("openclaw:outbox:gave-up", level="error", session_id=item.session_id,
                outbox_id=item.id, attempts=attempts, error=error)
            metrics.outbox_gave_up.labels(item.channel).inc()
            return self.store.mark_failed(item.id, error)
        delay = self.backoff(attempts - 1)
        log("openclaw:outbox:retry", level="warn", session_id=item.session_id, outbox_id=item.id,
            attempts=attempts, delay=round(delay, 2), error=error)
        return self.store.mark_retry(item.id, self.clock.seconds() + delay, error)

    def drain(self) -> Deferred:
        """Finish the pass in progress; rows left pending are sent after restart."""
        return self.loop.stopService()

    def hurry(self) -> None:
        pass

    def stopService(self) -> Deferred:
        Service.stopService(self)
        return self.drain()
