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

from eliot.twisted import DeferredContext, inline_callbacks
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from openclaw import metrics
from openclaw.backoff import backoff_policy
from openclaw.config import Config
from openclaw.eliotutil import action_type, continue_task, log, message_type, typed
from openclaw.events import OutboxItem
from openclaw.interfaces import IDrainable, IReconfigurable, IStatusSource
from openclaw.periodic import PeriodicService
from openclaw.status import StatusSource

# Eliot task ids kept for replies not yet delivered (oldest dropped first).
MAX_REMEMBERED_TASKS = 10_000

# deliver(item) -> Deferred[bool]: True delivered, False nobody to deliver to yet.
Deliverer = Callable[[OutboxItem], Any]


OUTBOX_ID = typed("outbox_id", [str], "the outbox row")
SESSION_ID = typed("session_id", [str], "who it goes to")
ATTEMPTS = typed("attempts", [int], "delivery attempts so far, this one included")
ERROR = typed("error", [str], "why the attempt failed")
OUTBOX_DELIVER = action_type("openclaw:outbox:deliver", [OUTBOX_ID, typed("channel", [str], "the connector")], [],
                             "delivery of a reply, in the task of the message it answers")
OUTBOX_SENT = message_type("openclaw:outbox:sent", [
    SESSION_ID, OUTBOX_ID, typed("length", [int], "characters sent"), ATTEMPTS,
], "the deliverer said it was delivered; the row is marked sent", "debug")
OUTBOX_RETRY = message_type("openclaw:outbox:retry", [
    SESSION_ID, OUTBOX_ID, ATTEMPTS, typed("delay", [int, float], "seconds before the next attempt"), ERROR,
], "a delivery failed and is retried later", "warn")
OUTBOX_GAVE_UP = message_type("openclaw:outbox:gave-up", [SESSION_ID, OUTBOX_ID, ATTEMPTS, ERROR],
                              "a delivery failed max_attempts times: the row is failed", "error")
OUTBOX_COUNT_FAILED = message_type("openclaw:outbox:count-failed", [ERROR],
                                   "the rows left at shutdown could not be counted", "error")
OUTBOX_LEFT_PENDING = message_type("openclaw:outbox:left-pending", [typed("pending", [int], "rows not yet sent")],
                                   "rows left pending at shutdown: they are sent after the restart", "warn")
OUTBOX_PASS_FAILED = message_type("openclaw:outbox:pass-failed", [ERROR],
                                  "a bug or the store failed in a delivery pass (the next poll tries again)", "error")


RETRY_BASE = 2.0
RETRY_CAP = 300.0
RETRY_JITTER = 0.2
"""A failed delivery is retried after 1.6-2 s, 3.2-4 s, 6.4-8 s ... at most 5 minutes."""


@implementer(IDrainable, IReconfigurable, IStatusSource)
class OutboxService(StatusSource, Service):
    """Polls the store for due rows; ``kick()`` makes it look at once."""

    def __init__(
        self, clock: IReactorTime, store: Any, deliverers: dict[str, Deliverer],
        max_attempts: int = 8, poll_every: float = 5.0, batch: int = 100,
        rand: Callable[[], float] = random.random, redact: Callable[[str], str] = lambda text: text,
        only_deliverable: bool = False,
    ) -> None:
        self.clock = clock
        #: Several instances (Redis): take only the rows of channels this
        #: one can deliver now (``deliverers.deliverable()``); the instance
        #: holding a connector sends its rows.  Alone: every row, and one
        #: without a deliverer fails visibly.
        self.only_deliverable = only_deliverable
        # A delivery error can quote upstream text (an SMTP reply, an HTTP
        # error body): ``redact`` scrubs secrets from it before it is stored.
        self.redact = redact
        #: The store's counts as of the last pass.
        self.counts = {"pending": 0, "sent": 0, "failed": 0}
        self.store = store
        self.deliverers = deliverers
        self.max_attempts = max_attempts
        self.batch = batch
        self.backoff = backoff_policy(RETRY_BASE, RETRY_CAP, jitter=RETRY_JITTER, rand=rand)
        #: The poll: a pass at start, then ``poll_every`` after each pass ends.
        self.loop = PeriodicService(clock, poll_every, self._pass, name="outbox", first=0)
        self._flushed: Deferred | None = None
        self._tasks: OrderedDict[str, str] = OrderedDict()

    def startService(self) -> None:
        Service.startService(self)
        self._flushed = None
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
        """One pass; errors must not stop the loop: the next poll tries again."""
        try:
            channels = self.deliverers.deliverable() if self.only_deliverable else None
            items = yield self.store.due_outbox(self.clock.seconds(), self.batch, channels)
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
        except Exception as e:
            # Errors must not stop the loop: the next poll tries again.
            log(OUTBOX_PASS_FAILED, level="error", error=repr(e))

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
        action = continue_task(task, OUTBOX_DELIVER, outbox_id=item.id, channel=item.channel)
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
            yield self._failed(item, self.redact(repr(e)))
            return
        if delivered:
            yield self.store.mark_sent(item.id)
            metrics.outbox_sent.labels(item.channel).inc()
            log(OUTBOX_SENT, level="debug", session_id=item.session_id, outbox_id=item.id,
                length=len(item.text), attempts=item.attempts + 1)
        # Not delivered and no error: nobody to deliver to yet; stays pending.

    def _failed(self, item: OutboxItem, error: str) -> Deferred:
        attempts = item.attempts + 1
        if attempts >= self.max_attempts:
            log(OUTBOX_GAVE_UP, level="error", session_id=item.session_id,
                outbox_id=item.id, attempts=attempts, error=error)
            metrics.outbox_gave_up.labels(item.channel).inc()
            return self.store.mark_failed(item.id, error)
        delay = self.backoff(attempts - 1)
        log(OUTBOX_RETRY, level="warn", session_id=item.session_id, outbox_id=item.id,
            attempts=attempts, delay=round(delay, 2), error=error)
        return self.store.mark_retry(item.id, self.clock.seconds() + delay, error)

    status_key = "outbox"

    def status(self) -> dict[str, int]:
        return dict(self.counts)

    def drain(self) -> Deferred:
        """
        Send what is due now (it drains after the pipeline, so this includes
        the replies made while draining), then poll no more.  Rows still
        pending are counted and logged; they are sent after the next start.
        """
        if self._flushed is None:
            self._flushed = Deferred()
            self._flush().addBoth(lambda _: self._flushed.called or self._flushed.callback(None))
        return self._flushed

    @inlineCallbacks
    def _flush(self) -> Any:
        # One more pass after the one running (if any): call_soon waits for it.
        yield self.loop.call_soon()
        yield self._stop_polling()
        try:
            counts = yield self.store.outbox_counts()
        except Exception as e:
            log(OUTBOX_COUNT_FAILED, level="error", error=repr(e))
            return
        if counts["pending"]:
            metrics.drain_undelivered.inc(counts["pending"])
            log(OUTBOX_LEFT_PENDING, level="warn", pending=counts["pending"])

    def hurry(self) -> None:
        """Stop waiting for the flush; what is unsent stays pending for the next start."""
        self._stop_polling()
        if self._flushed is not None and not self._flushed.called:
            self._flushed.callback(None)

    def _stop_polling(self) -> Deferred:
        """Poll no more; fires once the pass in progress (if any) is over."""
        return self.loop.stopService()

    def reconfigure(self, config: Config) -> None:
        self.max_attempts = config.outbox.max_attempts

    def stopService(self) -> Deferred:
        Service.stopService(self)
        return self._stop_polling()
