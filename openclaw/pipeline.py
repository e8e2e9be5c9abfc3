"""
The message path: record -> (acknowledge) -> lane -> brain -> outbox.

``receive`` returns once the inbound event is durable, which is when a
caller may acknowledge it.  The lane then runs the brain, and
``complete_inbound`` stores the reply in the outbox and marks the event done
in one step, so an acknowledged message is answered exactly once even if the
process dies at any point (events not done are replayed at start).
"""

from __future__ import annotations

from typing import Any, Callable

from eliot import Action
from eliot.twisted import DeferredContext, inline_callbacks
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from zope.interface import implementer

from openclaw import admission, metrics
from openclaw.agent.base import BrainError, BrainRequest
from openclaw.eliotutil import action_type, begin, log, message_type, typed
from openclaw.events import Event, OutboxItem
from openclaw.config import Config, LanesConfig
from openclaw.interfaces import IAdmission, IDrainable, IReconfigurable, IStatusSource
from openclaw.lanes import CHAT, HEARTBEAT, SYSTEM, Lanes
from openclaw.runtime import Runtime
from openclaw.status import StatusSource

BUSY_REPLY = "I'm busy with your earlier messages; please send this one again in a moment."
BRAIN_DOWN_REPLY = "Sorry, I could not reach my language model just now; please try again later."
USAGE_PREFIX = "usage:"
PRIORITY = {"message.received": CHAT, "user.command": CHAT, "system.heartbeat": HEARTBEAT}
#: Seconds after the last refusal that the pipeline still reports shedding.
SHED_WINDOW = 10.0

EVENT_ID = typed("event_id", [str], "the inbound event's id")
SESSION_ID = typed("session_id", [str], "the session: <channel>:<chat>")
LENGTH = typed("length", [int], "characters of the inbound text")
PROVIDER = typed("provider", [str], "the brain that answered")
MESSAGE = action_type("openclaw:message", [
    EVENT_ID, SESSION_ID, typed("source", [str], "the channel it came from"),
    typed("type", [str], "message.received, user.command, ..."), LENGTH,
], [], "one inbound message from receipt to its stored reply")
MESSAGE_REPLAYED = action_type("openclaw:message:replayed", [EVENT_ID, SESSION_ID, LENGTH], [],
                               "a message recorded before a restart, answered now")
MESSAGE_TAKEN = action_type("openclaw:message:taken", [EVENT_ID, SESSION_ID, LENGTH], [],
                            "a message read from its shard's stream (recorded here or by another instance), answered here")
MESSAGE_RECORDED = message_type("openclaw:message:recorded", [
    EVENT_ID, typed("duplicate", [bool], "a repeat of a message already recorded: not answered again"),
], "the message is durable (info when a repeat, else debug)", "debug")
MESSAGE_ANSWERED = message_type("openclaw:message:answered", [
    PROVIDER, typed("reply_length", [int], "characters of the reply"),
    typed("tool_calls", [int], "tools the brain called"),
    typed("input_tokens", [int], "model input tokens"), typed("output_tokens", [int], "model output tokens"),
], "the brain answered")
MESSAGE_BRAIN_FAILED = message_type("openclaw:message:brain-failed", [
    typed("error", [str], "why"), typed("retryable", [bool], "whether a retry could work"),
], "no brain could answer; the sender gets an apology", "error")
REPLY_STORED = message_type("openclaw:message:reply-stored", [
    EVENT_ID, typed("replies", [int], "outbox rows written (0: nothing to say)"),
], "the reply is in the outbox and the event done, in one step", "debug")
PIPELINE_ABANDONED = message_type("openclaw:pipeline:abandoned", [
    typed("count", [int], "messages whose brain call was abandoned"),
], "the drain was hurried: messages still thinking are left to replay after the restart", "warn")
PIPELINE_REPLAY = message_type("openclaw:pipeline:replay", [typed("count", [int], "events queued again")],
                               "unfinished messages found at start and queued again", "warn")
PIPELINE_STORE_RETRY = message_type("openclaw:pipeline:store-retry", [
    typed("op", [str], "the store operation"), typed("attempt", [int], "failures so far"),
    typed("delay", [int, float], "seconds before the next try"), typed("error", [str], "the store's error"),
], "a store operation for a message failed and is retried: the message is delayed, not lost", "warn")
PENDING = typed("pending", [int], "messages acknowledged and not yet answered")
PIPELINE_SHEDDING = message_type("openclaw:pipeline:shedding", [
    typed("reason", [str], "the bound that refused: session, overall or wait"), PENDING,
    typed("estimated_wait", [int, float], "seconds a new message would wait for its reply"),
], "past an admission bound: inbound messages are refused as busy (not recorded, not acknowledged)", "warn")
PIPELINE_SHED_OVER = message_type("openclaw:pipeline:shed-over", [
    typed("refused", [int], "messages refused while shedding"), PENDING,
], "no refusal for a while: shedding is over", "info")


def store_retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...) of a store operation: 0.5 s doubling, at most 30 s."""
    return min(30.0, 0.5 * 2.0 ** min(attempt - 1, 6))


class Busy(Exception):
    """Past an admission bound (``reason``): nothing was recorded; tell the sender to try again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ShuttingDown(Exception):
    """The daemon is draining and takes no new messages."""


class StoreUnavailable(Exception):
    """The store could not record the message (nothing was acknowledged): send it again later."""


class Abandoned(Exception):
    """A hurried drain gave up on this message's store retries; it stays received for the next start."""


@implementer(IAdmission, IDrainable, IReconfigurable, IStatusSource)
class Pipeline(StatusSource, Service):
    """
    Owns the lanes; ``receive`` is the one entry for every inbound event,
    and admits it only within the bounds of ``openclaw.admission``.
    ``history`` is how many past messages the brain sees (``brain.history``).
    With ``streams`` (the Redis store) ``receive`` only records: the
    instance holding the session's shard reads the event back and hands it
    to ``take`` (openclaw/shards.py), and reclaims what a dead one left.
    """

    def __init__(
        self, runtime: Runtime, store: Any, brain: Any, outbox: Any,
        history: int = 20, lanes: LanesConfig = LanesConfig(), streams: bool = False,
    ) -> None:
        self.runtime = runtime
        self.streams = streams
        #: With ``streams``: whether this instance reads the session's shard
        #: now (set by the shard consumer), so the message's action goes on here.
        self.reads_here: Callable[[str], bool] = lambda session_id: False
        #: With ``streams``: the whole cluster's backlog's estimated wait (``openclaw.inbound_backlog``).
        self.cluster_wait: Callable[[], float] = lambda: 0.0
        self.store = store
        self.brain = brain
        self.outbox = outbox
        self.history = history
        self.lanes = Lanes(runtime.clock, self._handle, lanes.max_concurrent, lanes.max_queue, lanes.idle_after)
        self.limits = _limits(lanes)
        #: Acknowledged (or being recorded) and not yet answered: in all, and by session.
        self.pending = 0
        self._pending: dict[str, int] = {}
        #: Moving averages: seconds from a lane's turn to the stored reply, and
        #: between stored replies while anything is pending (1 / throughput).
        self.handling = 0.0
        self.spacing = 0.0
        self._busy_since = self._answered_at = 0.0
        #: Messages refused as busy since start, and while shedding now.
        self.refused = 0
        self._shed: dict[str, Any] | None = None
        self._shed_timer: Any = None
        self.draining = False
        #: Set by ``hurry()``: in-flight brain work is abandoned, its events stay durable.
        self.abandoned = False
        self._thinking: dict[str, Deferred] = {}
        self._taken: dict[str, Deferred] = {}
        # The Eliot action of each message in flight: it spans receive ->
        # lane -> brain -> reply stored, and the delivery continues its task.
        self._actions: dict[str, Action] = {}

    def startService(self) -> None:
        Service.startService(self)
        self.draining = False
        if self.streams:
            self.replayed = succeed(0)
            return
        self.replayed = self._durably("pending_inbound", self.store.pending_inbound)
        self.replayed.addCallback(self._replay)
        self.replayed.addErrback(lambda f: f.trap(Abandoned))

    @inlineCallbacks
    def _durably(self, op: str, call: Callable[[], Deferred]) -> Any:
        """
        ``call()`` until the store takes it: a failing store delays an
        acknowledged message, never loses it.  Only a hurried drain ends the
        retries (``Abandoned``): the event stays received for the next start.
        Every operation retried here is idempotent (``complete_inbound``
        changes nothing the second time).
        """
        attempt = 0
        while True:
            try:
                result = yield call()
            except Exception as e:
                if self.abandoned or not self.running:
                    raise Abandoned() from None
                attempt += 1
                delay = store_retry_delay(attempt)
                log(PIPELINE_STORE_RETRY, level="warn", op=op, attempt=attempt, delay=delay,
                    error=str(e)[:300] or type(e).__name__)
                yield deferLater(self.runtime.clock, delay, lambda: None)
            else:
                return result

    def _replay(self, events: list[Event]) -> int:
        if events:
            log(PIPELINE_REPLAY, level="warn", count=len(events))
        for event in events:
            self._take(event.session_id)
            self._submit(event, force=True)
        return len(events)

    # Admission

    def _load(self, session_id: str) -> admission.Load:
        mine = self._pending.get(session_id, 0)
        return admission.Load(session_pending=mine, pending=self.pending, handling=self.handling,
                              spacing=self.spacing, cluster_wait=self.cluster_wait())

    def _take(self, session_id: str) -> None:
        if not self.pending:
            self._busy_since = self.runtime.clock.seconds()
        self.pending += 1
        self._pending[session_id] = self._pending.get(session_id, 0) + 1
        metrics.pending_messages.set(self.pending)

    def _release(self, result: Any, session_id: str) -> Any:
        """One message of ``session_id`` answered (or given up): passes ``result`` on."""
        self.pending -= 1
        left = self._pending[session_id] - 1
        if left:
            self._pending[session_id] = left
        else:
            del self._pending[session_id]
        metrics.pending_messages.set(self.pending)
        return result

    def _refuse(self, reason: str, session_id: str) -> Busy:
        self.refused += 1
        metrics.admission_refused.labels(reason).inc()
        now = self.runtime.clock.seconds()
        if self._shed is None:
            wait = admission.estimated_wait(self._load(session_id))
            log(PIPELINE_SHEDDING, level="warn", reason=reason, pending=self.pending, estimated_wait=round(wait, 3))
            self._shed = {"reason": reason, "since": now, "refused": 0}
            metrics.shedding.set(1)
            self._shed_timer = self.runtime.clock.callLater(SHED_WINDOW, self._shed_check)
        self._shed.update(reason=reason, last=now, refused=self._shed["refused"] + 1)
        return Busy(reason)

    def _shed_check(self) -> None:
        """Shedding ends ``SHED_WINDOW`` after the last refusal (checked then, not per refusal)."""
        quiet = self.runtime.clock.seconds() - self._shed["last"]
        if quiet < SHED_WINDOW:
            self._shed_timer = self.runtime.clock.callLater(SHED_WINDOW - quiet, self._shed_check)
            return
        log(PIPELINE_SHED_OVER, refused=self._shed["refused"], pending=self.pending)
        self._shed = self._shed_timer = None
        metrics.shedding.set(0)

    status_key = "admission"

    def status(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "pending": self.pending, "sessions": len(self._pending), "handling": round(self.handling, 4),
            "spacing": round(self.spacing, 5), "estimated_wait": round(admission.estimated_wait(self._load("")), 3),
            "max_pending": limits.max_pending, "max_queue": limits.max_queue, "max_wait": limits.max_wait,
            "wait_bound": round(admission.wait_bound(self._load(""), limits), 3),
            "shedding": self._shed is not None, "refused": self.refused,
        }

    def problems(self) -> list[str]:
        if self._shed is None:
            return []
        return [f"shedding load: {self._shed['refused']} messages refused as busy ({self._shed['reason']} bound), "
                f"{self.pending} acknowledged and unanswered"]

    def receive(self, event: Event) -> Deferred:
        """
        Record ``event`` durably and queue it on its session's lane.

        :return: a Deferred firing with ``(event_id, duplicate)`` once the
            event is durable; failing with ``Busy`` or ``ShuttingDown``
            (nothing recorded) when it cannot be taken.
        """
        if self.draining:
            raise ShuttingDown()
        reason = admission.refusal(self._load(event.session_id), self.limits)
        if reason is not None:
            raise self._refuse(reason, event.session_id)
        self._take(event.session_id)
        action = begin(MESSAGE, event_id=event.id, session_id=event.session_id,
                       source=event.source, type=event.type, length=len(event.text))
        self._actions[event.id] = action
        with action.context():
            d = self.store.record_inbound(event)
        d.addCallback(self._recorded, event, action)
        d.addErrback(self._record_failed, event, action)
        return d

    def _recorded(self, result: tuple[str, bool], event: Event, action: Action) -> tuple[str, bool]:
        event_id, duplicate = result
        with action.context():
            log(MESSAGE_RECORDED, level="info" if duplicate else "debug", event_id=event_id, duplicate=duplicate)
        if duplicate or self.streams:
            # Nothing to answer, or answered where its shard is read: take() counts it there.
            self._release(None, event.session_id)
        if duplicate or (self.streams and not self.reads_here(event.session_id)):
            # Another instance answers it: this action ends here (that one begins MESSAGE_TAKEN).
            self._actions.pop(event.id, None)
            action.finish()
        if not duplicate:
            self.runtime.sessions.touch(event.session_id, event.source, self.runtime.clock.seconds(),
                                        event.payload.get("sender_id"))
            metrics.requests_total.labels(event.source, event.type).inc()
            if not self.streams:
                self._submit(event)
        return result

    def take(self, event: Event) -> Deferred:
        """
        Queue an event read from its shard's stream (already durable) on its
        lane.  :return: a Deferred firing once it is handled (answered, or
        left received by a hurried drain).
        """
        handled = self._taken[event.id] = Deferred()
        self._take(event.session_id)
        self._submit(event, force=True)
        return handled

    def _record_failed(self, failure: Any, event: Event, action: Action) -> Any:
        """Nothing was recorded, so nothing is acknowledged: the sender is told to send again."""
        self._release(None, event.session_id)
        self._actions.pop(event.id, None)
        action.finish(failure.value)
        raise StoreUnavailable(failure.getErrorMessage() or type(failure.value).__name__)

    def _submit(self, event: Event, force: bool = False) -> None:
        priority = PRIORITY.get(event.type, SYSTEM)
        if not self.lanes.submit(event.session_id, event, priority, force=force):
            # The lane's own bound (a reload lowered it, or a replay): answer, never drop.
            d = self._complete(event, BUSY_REPLY)
            d.addBoth(self._release, event.session_id)
            d.addErrback(lambda f: f.trap(Abandoned))

    def _handle(self, session_id: str, event: Event) -> Deferred:
        action = self._actions.pop(event.id, None) or begin(
            MESSAGE_TAKEN if event.id in self._taken else MESSAGE_REPLAYED,
            event_id=event.id, session_id=session_id, length=len(event.text))
        with action.context():
            d = DeferredContext(self._answer(session_id, event, action))
            d.addErrback(lambda f: f.trap(Abandoned))  # left received: answered after the next start
            d.addActionFinish()
        taken = self._taken.pop(event.id, None)
        if taken is not None:
            d.result.addBoth(lambda result: (taken.callback(None), result)[1])
        return d.result.addBoth(self._release, session_id)

    @inline_callbacks
    def _answer(self, session_id: str, event: Event, action: Action) -> Any:
        started = self.runtime.clock.seconds()
        # The rules brain answers from the facts alone: no store round trip for it.
        history = (yield self._durably("history", lambda: self.store.history(session_id, self.history + 1))
                   ) if self.brain.uses_history else []
        request = BrainRequest(
            session_id=session_id, text=event.text, event_id=event.id,
            history=[{"role": m["role"], "text": m["text"]} for m in history if m["event_id"] != event.id][-self.history:],
        )
        if self.abandoned:
            return
        try:
            thinking = self._thinking[event.id] = self.brain.respond(request)
            try:
                reply = yield thinking
            finally:
                self._thinking.pop(event.id, None)
            text = reply.text
            log(MESSAGE_ANSWERED, provider=reply.provider, reply_length=len(text),
                tool_calls=reply.tool_calls, **reply.usage)
            for kind, count in reply.usage.items():
                metrics.brain_tokens.labels(reply.provider, kind).inc(count)
            if any(reply.usage.values()):
                yield self._add_usage(session_id, reply.usage)
        except (BrainError, CancelledError) as e:
            if self.abandoned:
                return  # hurried: the event stays received and is answered after the next start
            if isinstance(e, CancelledError):
                raise
            log(MESSAGE_BRAIN_FAILED, level="error", error=str(e), retryable=e.retryable)
            text = BRAIN_DOWN_REPLY
        if self.abandoned:
            return
        self.outbox.remember_task(event.id, action.serialize_task_id().decode())
        yield self._complete(event, text)
        log(REPLY_STORED, level="debug", event_id=event.id, replies=1 if text else 0)
        now = self.runtime.clock.seconds()
        self.handling = admission.smoothed(self.handling, now - started)
        # Since the previous answer, or since work began after an idle spell.
        self.spacing = admission.smoothed(self.spacing, now - max(self._answered_at, self._busy_since))
        self._answered_at = now
        metrics.response_duration.labels(event.source).observe(now - started)

    @inlineCallbacks
    def _add_usage(self, session_id: str, usage: dict[str, int]) -> Any:
        """
        Add a reply's token counts to the session's running total (state key
        ``usage:<session>``).  A lane runs one message at a time, so this
        read-modify-write never races within its session.
        """
        key = USAGE_PREFIX + session_id
        total = (yield self._durably("get_state", lambda: self.store.get_state(key))) or {}
        for kind, count in usage.items():
            total[kind] = total.get(kind, 0) + count
        total["replies"] = total.get("replies", 0) + 1
        yield self._durably("set_state", lambda: self.store.set_state(key, total))

    def _complete(self, event: Event, text: str) -> Deferred:
        replies = [OutboxItem(
            session_id=event.session_id, channel=event.source, text=text,
            dedupe_key=f"reply:{event.id}", reply_to=event.id,
            created_at=self.runtime.clock.seconds(), next_attempt=self.runtime.clock.seconds(),
        )] if text else []
        d = self._durably("complete_inbound", lambda: self.store.complete_inbound(event.id, replies))
        d.addCallback(lambda _: self.outbox.kick())
        return d

    def refuse_new(self) -> None:
        self.draining = True

    def drain(self) -> Deferred:
        """Let running handlers finish; queued events stay durable and replay at start."""
        self.draining = True
        self.lanes.pause()
        return self.lanes.until_idle()

    def hurry(self) -> None:
        """
        Abandon the messages still with the brain: their events stay
        ``received`` in the store, so the next start answers them (once).
        """
        if self.abandoned or not self.draining:
            return
        self.abandoned = True
        abandoned = list(self._thinking.values())
        if abandoned:
            metrics.drain_abandoned_messages.inc(len(abandoned))
            log(PIPELINE_ABANDONED, level="warn", count=len(abandoned))
        for d in abandoned:
            d.cancel()
        self.lanes.release_waiters()

    def reconfigure(self, config: Config) -> None:
        """New lane limits and history length, for the next message (the brain reloads itself)."""
        self.lanes.max_concurrent = config.lanes.max_concurrent
        self.lanes.max_queue = config.lanes.max_queue
        self.lanes.idle_after = config.lanes.idle_after
        self.limits = _limits(config.lanes)
        self.history = config.brain.history

    def stopService(self) -> Deferred:
        Service.stopService(self)
        self.lanes.stop()
        if self._shed_timer is not None and self._shed_timer.active():
            self._shed_timer.cancel()
        self._shed = self._shed_timer = None
        metrics.shedding.set(0)
        return succeed(None)


def _limits(lanes: LanesConfig) -> admission.Limits:
    return admission.Limits(max_queue=lanes.max_queue, max_pending=lanes.max_pending, max_wait=lanes.max_wait,
                            wait_answers=lanes.wait_answers)
