"""
What every chat connector shares: the connect/reconnect loop with capped,
jittered backoff, the stall watchdog, terminal errors, the way an inbound
message enters the durable path, and the health detail.

A connector only says how to run one connection (``run_once``) and how to
send one text (``send_text``).  ``run_once`` returns a Deferred that fires
(or fails) when the connection is over; cancelling it must tear the
connection down.  That is how the watchdog and ``stopService`` end a
connection that looks alive but has stopped receiving.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from eliot.twisted import DeferredContext
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from zope.interface import implementer

from openclaw import metrics
from openclaw.backoff import backoff_policy
from openclaw.connectors.access import Access
from openclaw.config.connectors import SECRET_FIELDS
from openclaw.eliotutil import action_type, begin, begin_task, log, message_type, typed
from openclaw.events import MESSAGE_RECEIVED, USER_COMMAND, Event, OutboxItem
from openclaw.health import iso
from openclaw.interfaces import IConnector, IDrainable
from openclaw.logs import scrub_text
from openclaw.pipeline import BUSY_REPLY, Busy, ShuttingDown

STARTING, CONNECTING, CONNECTED, BACKOFF, FAILED, STOPPED = (
    "starting", "connecting", "connected", "backoff", "failed", "stopped")
RECONNECT_BASE = 1.0
RECONNECT_JITTER = 0.5
"""Reconnects wait 0.5-1 s, 1-2 s, 2-4 s ... at most ``backoff_max``."""
NOT_TAKEN = "shutting-down"
BUSY = "busy"


CONNECTOR = typed("connector", [str], "the connector's name: telegram, discord, slack, whatsapp, smtp")
ATTEMPT = typed("attempt", [int], "connection attempts since the last stable one, 0 for the first")
CONNECTION = action_type("openclaw:connector:connection", [CONNECTOR, ATTEMPT], [],
                         "one connection attempt of a chat connector; fails with the exception that broke it")
CONNECTION_UP = message_type("openclaw:connector:connected", [CONNECTOR, ATTEMPT], "the connection is up")
STALLED = message_type("openclaw:connector:stalled", [CONNECTOR, typed("detail", [str], "what went quiet")],
                       "nothing received within stall_timeout, or a heartbeat unacknowledged: torn down", "warn")
RECONNECT = message_type("openclaw:connector:reconnect", [
    CONNECTOR, typed("reason", [str], "error, stall or closed"), typed("error", [str], "what ended the connection"),
    typed("delay", [int, float], "seconds before the next attempt"), ATTEMPT,
], "a connection ended; retrying after delay", "warn")
CONNECTOR_FAILED = message_type("openclaw:connector:failed", [CONNECTOR, typed("reason", [str], "why")],
                      "terminal: credentials refused or the config is unusable; no retries until restart", "error")
ALERT_FAILED = message_type("openclaw:connector:alert-failed", [typed("error", [str], "why")],
                            "the alert about a failed connector could not be queued", "error")
INBOUND = action_type("openclaw:connector:inbound", [
    CONNECTOR, typed("connection_task", [str, None], "task_uuid of the connection it came on"),
    typed("message_id", [str], "the platform's id of the message"),
], [typed("verdict", [str], "accepted, duplicate, refused, busy or shutting-down (the last two not acknowledged "
                            "where the platform sends it again)")],
    "one inbound message, its own task: access, recording, then (in the same task) the answer and its send")
REFUSED = message_type("openclaw:connector:refused", [
    CONNECTOR, typed("sender_id", [str], "the platform's id of the sender"),
    typed("verdict", [str], "not_allowed, pairing or rate_limited"),
], "an inbound message did not reach the brain")
MALFORMED = message_type("openclaw:connector:malformed", [
    CONNECTOR, typed("what", [str], "what kind of payload"), typed("detail", [str], "what is wrong, at most 200 characters"),
], "a payload the connector could not use was skipped", "warn")
REPLY_FAILED = message_type("openclaw:connector:reply-failed", [CONNECTOR, typed("error", [str], "why")],
                            "a refusal or busy reply could not be sent", "warn")
SEND = action_type("openclaw:connector:send", [
    CONNECTOR, typed("dedupe_key", [str], "the reply's idempotency key"), typed("length", [int], "characters"),
], [], "one text sent to the platform (split as it needs), inside the task of the message it answers")


class Terminal(Exception):
    """The platform refused us for good (revoked or invalid token): stop retrying."""


class Stalled(Exception):
    """Nothing was received within the stall bound: the connection is a zombie."""


class Scrubbed(Exception):
    """A send's failure whose text quoted a credential, with every form of it replaced."""


class NotConnected(Exception):
    """A send was attempted while the connector cannot send (the outbox retries)."""


class Watchdog:
    """Calls ``on_stall`` when ``poke`` has not been called for ``timeout`` seconds."""

    def __init__(self, clock: Any, timeout: float, on_stall: Callable[[], None]) -> None:
        self.clock = clock
        self.timeout = timeout
        self.on_stall = on_stall
        self._call: Any = None

    def poke(self) -> None:
        if self._call is not None and self._call.active():
            self._call.reset(self.timeout)
        elif self.timeout > 0:
            self._call = self.clock.callLater(self.timeout, self.on_stall)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


@implementer(IConnector, IDrainable)
class ConnectorService(Service):
    """
    :param config: the platform's section (``openclaw.config.connectors``).
    :param pipeline: where accepted messages go (``Pipeline.receive``).
    :param notifier: told when the connector fails for good.
    """

    #: False for connectors that receive nothing on a connection of their
    #: own (webhooks, SMTP): silence is normal there, so no watchdog.
    watches_stalls = True
    #: Whether the platform sends a message again that was not acknowledged
    #: (Telegram, WhatsApp, Slack): a ``busy`` pipeline then fails the
    #: receive with ``Busy`` and the message is left unacknowledged.  Where it
    #: is not (Discord), the sender is answered "busy, send it again" instead.
    redelivers = True

    def __init__(
        self, name: str, clock: Any, config: Any, pipeline: Any, store: Any, notifier: Any = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.setName(name)
        self.clock = clock
        self.config = config
        self.pipeline = pipeline
        self.store = store
        self.notifier = notifier
        self.rng = rng
        self.backoff = backoff_policy(RECONNECT_BASE, config.backoff_max, jitter=RECONNECT_JITTER, rand=rng)
        self.access = Access(name, config.allow_from, config.pairing, config.rate_per_minute, store, clock)
        self.state = STARTING
        self.last_error: str | None = None
        self.last_receive: float | None = None
        self.connected_at: float | None = None
        self.attempt = 0
        self.reconnects = 0
        self._current: Deferred | None = None
        self._timer: Any = None
        self._stopping = False
        self._stall_reason: str | None = None
        self._refused: str | None = None
        #: The Eliot task of the current connection attempt: each inbound
        #: message's own task names it (``connection_task``).
        self.connection_task: str | None = None
        self.watchdog = Watchdog(clock, config.stall_timeout if self.watches_stalls else 0, self._stalled)

    # What a platform implements

    def run_once(self) -> Deferred:
        """
        Connect and serve until the connection ends; call ``up()`` once
        connected and ``poke()`` whenever anything arrives.  Fail with
        ``Terminal`` when the platform refuses the credentials.
        """
        raise NotImplementedError

    def send_text(self, chat_id: str, text: str, dedupe_key: str) -> Deferred:
        """Send ``text`` (split as the platform needs) to ``chat_id``."""
        raise NotImplementedError

    # The loop

    def startService(self) -> None:
        Service.startService(self)
        self._stopping = False
        metrics.connector_up.labels(self.name).set(0)
        self._connect()

    def _connect(self) -> None:
        self._timer = None
        if self._stopping:
            return
        self.state = CONNECTING
        self._stall_reason = self._refused = None
        self.watchdog.poke()
        action = begin(CONNECTION, connector=self.name, attempt=self.attempt)
        self.connection_task = action.task_uuid
        with action.context():
            self._current = d = self.run_once()
        d.addCallbacks(self._ended, self._broke, errbackArgs=(action,), callbackArgs=(action,))

    def up(self) -> None:
        """The connection is established and receiving."""
        self.state = CONNECTED
        self.connected_at = self.clock.seconds()
        self.watchdog.poke()
        metrics.connector_up.labels(self.name).set(1)
        log(CONNECTION_UP, connector=self.name, attempt=self.attempt)

    def poke(self) -> None:
        """Something arrived (a message, a heartbeat ACK, a poll result): not stalled."""
        self.watchdog.poke()

    def _stalled(self) -> None:
        self.stall(f"no data for {self.config.stall_timeout:g}s")

    def stall(self, detail: str) -> None:
        """
        Tear the connection down as a zombie (nothing arrives, or a heartbeat
        went unacknowledged); it is reconnected and counted as a stall.
        """
        if self._current is not None and not self._current.called:
            self._stall_reason = detail
            log(STALLED, level="warn", connector=self.name, detail=detail)
            self._current.cancel()

    def credentials_refused(self, reason: str) -> None:
        """
        The platform refused our credentials outside the connection (a send
        answered ``invalid_auth``): end the connection and fail for good, as
        if it had been refused at connect.
        """
        if self._current is not None and not self._current.called:
            self._refused = reason
            self._current.cancel()
        elif self.state != FAILED:
            self._fail(reason)

    def _ended(self, _: Any, action: Any) -> None:
        action.finish()
        self._after("closed", "connection closed")

    def _broke(self, failure: Any, action: Any) -> None:
        action.finish(failure.value)
        if self._stopping:
            return
        if failure.check(Terminal):
            self._fail(str(failure.value))
            return
        if failure.check(CancelledError) and self._refused:
            self._fail(self._refused)
            return
        if failure.check(CancelledError) and self._stall_reason:
            self._after("stall", self._stall_reason)
            return
        self._after("error", f"{type(failure.value).__name__}: {failure.value}")

    def _after(self, reason: str, error: str) -> None:
        self._current = None
        self.watchdog.stop()
        metrics.connector_up.labels(self.name).set(0)
        if self._stopping:
            return
        now = self.clock.seconds()
        if self.connected_at is not None and now - self.connected_at >= self.config.stable_after:
            self.attempt = 0  # a stable connection resets the backoff
        self.connected_at = None
        self.last_error = error
        self.reconnects += 1
        metrics.connector_reconnects.labels(self.name, reason).inc()
        delay = self.backoff(self.attempt)
        self.attempt += 1
        self.state = BACKOFF
        log(RECONNECT, level="warn", connector=self.name, reason=reason,
            error=error, delay=round(delay, 2), attempt=self.attempt)
        self._timer = self.clock.callLater(delay, self._connect)

    def _fail(self, reason: str) -> None:
        self._current = None
        self.watchdog.stop()
        self.state = FAILED
        self.last_error = reason
        metrics.connector_up.labels(self.name).set(0)
        log(CONNECTOR_FAILED, level="error", connector=self.name, reason=reason)
        if self.notifier is not None:
            self.notifier.notify(
                "alert", self.name, f"The {self.name} connector stopped: {reason}. Fix its credentials and restart.",
                dedupe_key=f"connector:{self.name}:failed:{self.clock.seconds():.0f}", avoid=self.name,
            ).addErrback(lambda f: log(ALERT_FAILED, level="error", error=repr(f.value)))

    # Inbound

    def receive_message(
        self, chat_id: str, sender_id: str, text: str, message_id: str, sender_name: str = "",
        reply_to: str | None = None,
    ) -> Deferred:
        """
        Take one inbound message through access control into the durable
        path.  :return: a Deferred firing with the verdict once it is safe to
        acknowledge the platform (``accepted``, ``duplicate``, ``refused``,
        ``busy`` where the platform does not redeliver); failing with
        ``ShuttingDown`` (fetched again after the restart) or ``Busy`` (the
        platform sends it again later) when it must not be acknowledged.

        The message is its own Eliot task (not a child of the hours-long
        connection), so its tree runs from here through the brain to the
        reply's send; ``connection_task`` names the connection it came on.
        """
        action = begin_task(INBOUND, connector=self.name, connection_task=self.connection_task,
                            message_id=message_id)
        with action.context():
            d = self._receive(chat_id, sender_id, text, message_id, sender_name, reply_to)
        return d.addCallbacks(self._inbound_verdict, self._inbound_not_taken,
                              callbackArgs=(action,), errbackArgs=(action,))

    @staticmethod
    def _inbound_verdict(verdict: str, action: Any) -> str:
        action.add_success_fields(verdict=verdict)
        action.finish()
        return verdict

    @staticmethod
    def _inbound_not_taken(failure: Any, action: Any) -> Any:
        # Draining or busy is no error: the message is not acknowledged and comes again.
        if failure.check(ShuttingDown, Busy):
            action.add_success_fields(verdict=NOT_TAKEN if failure.check(ShuttingDown) else BUSY)
            action.finish()
        else:
            action.finish(failure.value)
        return failure

    @inlineCallbacks
    def _receive(
        self, chat_id: str, sender_id: str, text: str, message_id: str, sender_name: str, reply_to: str | None,
    ) -> Any:
        self.last_receive = self.clock.seconds()
        self.poke()
        metrics.connector_messages.labels(self.name, "in").inc()
        decision = yield self.access.decide(sender_id, chat_id, sender_name)
        if decision.verdict != "allowed":
            metrics.connector_refused.labels(self.name, decision.verdict).inc()
            log(REFUSED, level="info", connector=self.name, sender_id=sender_id,
                verdict=decision.verdict)
            if decision.reply:
                yield self._reply_directly(chat_id, decision.reply, f"refused:{message_id}")
            return "refused"
        event = Event(
            type=USER_COMMAND if text.startswith("/") else MESSAGE_RECEIVED, source=self.name,
            session_id=f"{self.name}:{chat_id}", timestamp=self.clock.seconds(),
            payload={"text": text, "sender_id": sender_id, "sender_name": sender_name,
                     "platform_message_id": message_id, "reply_to": reply_to},
        )
        try:
            _, duplicate = yield self.pipeline.receive(event)
        except Busy:
            if self.redelivers:
                raise  # nothing recorded and not acknowledged: the platform sends it again
            yield self._reply_directly(chat_id, BUSY_REPLY, f"busy:{message_id}")
            return BUSY
        return "duplicate" if duplicate else "accepted"

    def malformed(self, what: str, detail: str) -> None:
        """A payload we could not use: logged and skipped; the connection goes on."""
        metrics.connector_refused.labels(self.name, "malformed").inc()
        log(MALFORMED, level="warn", connector=self.name, what=what, detail=detail[:200])

    def _reply_directly(self, chat_id: str, text: str, dedupe_key: str) -> Deferred:
        """Refusals go out now, best effort: they answer no durable event."""
        d = self._send_logged(chat_id, text, dedupe_key)
        d.addErrback(lambda f: log(REPLY_FAILED, level="warn", connector=self.name,
                                   error=repr(f.value)))
        return d

    # Outbound

    def deliver(self, item: OutboxItem) -> Deferred:
        """
        The outbox deliverer of this connector's channel: ``True`` when sent;
        a failure makes the outbox retry with backoff.
        """
        if self.state == FAILED:
            raise NotConnected(self.scrub(f"{self.name} connector failed: {self.last_error}"))
        chat_id = item.session_id.split(":", 1)[1]
        d = self._send_logged(chat_id, item.text, item.dedupe_key)

        def sent(_: Any) -> bool:
            metrics.connector_messages.labels(self.name, "out").inc()
            return True

        def failed(failure: Any) -> Any:
            metrics.connector_send_failures.labels(self.name).inc()
            text = str(failure.value)
            clean = self.scrub(text)
            if clean != text:  # the platform quoted a credential back: the outbox stores this text
                raise Scrubbed(f"{type(failure.value).__name__}: {clean}")
            return failure

        return d.addCallbacks(sent, failed)

    def _send_logged(self, chat_id: str, text: str, dedupe_key: str) -> Deferred:
        """``send_text`` as an action, in the task of the message it answers (if any)."""
        action = begin(SEND, connector=self.name, dedupe_key=dedupe_key, length=len(text))
        with action.context():
            return DeferredContext(self.send_text(chat_id, text, dedupe_key)).addActionFinish()

    # Status

    def secrets(self) -> list[str]:
        """
        This connector's credentials: the ``SECRET_FIELDS`` it holds as
        attributes (read from the file or the environment) or in its config.
        """
        found = [getattr(self, n, "") for n in SECRET_FIELDS] + [getattr(self.config, n, "") for n in SECRET_FIELDS]
        return [value for value in found if isinstance(value, str) and value]

    def scrub(self, text: str) -> str:
        """Upstream text (an error reply, a body) without any form of this connector's credentials."""
        return scrub_text(text, self.secrets())

    def is_connected(self) -> bool:
        return self.state == CONNECTED

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.is_connected(),
            "state": self.state,
            "last_receive": iso(self.last_receive),
            "last_error": self.scrub(self.last_error) if self.last_error else self.last_error,
            "reconnects": self.reconnects,
        }

    def reconfigure_access(self, config: Any) -> None:
        """A reload changed only who may talk (``allow_from``, ``pairing``, rate): no reconnect."""
        self.config = config
        self.access.reconfigure(config.allow_from, config.pairing, config.rate_per_minute)

    # Shutdown

    def drain(self) -> Deferred:
        return succeed(None)

    def hurry(self) -> None:
        pass

    def stopService(self) -> Deferred:
        Service.stopService(self)
        self._stopping = True
        self.watchdog.stop()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        current, self._current = self._current, None
        if current is not None and not current.called:
            current.addErrback(lambda f: None)
            current.cancel()
        if self.state != FAILED:
            self.state = STOPPED
        metrics.connector_up.labels(self.name).set(0)
        return succeed(None)
