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

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from zope.interface import implementer

from openclaw import metrics
from openclaw.backoff import backoff_policy
from openclaw.connectors.access import Access
from openclaw.eliotutil import begin, log
from openclaw.events import MESSAGE_RECEIVED, USER_COMMAND, Event, OutboxItem
from openclaw.health import iso
from openclaw.interfaces import IConnector, IDrainable
from openclaw.pipeline import BUSY_REPLY, Busy

STARTING, CONNECTING, CONNECTED, BACKOFF, FAILED, STOPPED = (
    "starting", "connecting", "connected", "backoff", "failed", "stopped")
RECONNECT_BASE = 1.0
RECONNECT_JITTER = 0.5
"""Reconnects wait 0.5-1 s, 1-2 s, 2-4 s ... at most ``backoff_max``."""


class Terminal(Exception):
    """The platform refused us for good (revoked or invalid token): stop retrying."""


class Stalled(Exception):
    """Nothing was received within the stall bound: the connection is a zombie."""


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
    :param config: the platform's section (``openclaw.connectors.config``).
    :param pipeline: where accepted messages go (``Pipeline.receive``).
    :param notifier: told when the connector fails for good.
    """

    #: False for connectors that receive nothing on a connection of their
    #: own (webhooks, SMTP): silence is normal there, so no watchdog.
    watches_stalls = True

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
        action = begin("openclaw:connector:connection", connector=self.name, attempt=self.attempt)
        with action.context():
            self._current = d = self.run_once()
        d.addCallbacks(self._ended, self._broke, errbackArgs=(action,), callbackArgs=(action,))

    def up(self) -> None:
        """The connection is established and receiving."""
        self.state = CONNECTED
        self.connected_at = self.clock.seconds()
        self.watchdog.poke()
        metrics.connector_up.labels(self.name).set(1)
        log("openclaw:connector:connected", connector=self.name, attempt=self.attempt)

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
            log("openclaw:connector:stalled", level="warn", connector=self.name, detail=detail)
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
        log("openclaw:connector:reconnect", level="warn", connector=self.name, reason=reason,
            error=error, delay=round(delay, 2), attempt=self.attempt)
        self._timer = self.clock.callLater(delay, self._connect)

    def _fail(self, reason: str) -> None:
        self._current = None
        self.watchdog.stop()
        self.state = FAILED
        self.last_error = reason
        metrics.connector_up.labels(self.name).set(0)
        log("openclaw:connector:failed", level="error", connector=self.name, reason=reason)
        if self.notifier is not None:
            self.notifier.notify(
                "alert", self.name, f"The {self.name} connector stopped: {reason}. Fix its credentials and restart.",
                dedupe_key=f"connector:{self.name}:failed:{self.clock.seconds():.0f}", avoid=self.name,
            ).addErrback(lambda f: log("openclaw:connector:alert-failed", level="error", error=repr(f.value)))

    # Inbound

    @inlineCallbacks
    def receive_message(
        self, chat_id: str, sender_id: str, text: str, message_id: str, sender_name: str = "",
        reply_to: str | None = None,
    ) -> Any:
        """
        Take one inbound message through access control into the durable
        path.  :return: a Deferred firing with the verdict once it is safe to
        acknowledge the platform (``accepted``, ``duplicate``, ``refused``,
        ``busy``); failing with ``ShuttingDown`` when it must not be
        acknowledged (it will be fetched again after restart).
        """
        self.last_receive = self.clock.seconds()
        self.poke()
        metrics.connector_messages.labels(self.name, "in").inc()
        decision = yield self.access.decide(sender_id, chat_id, sender_name)
        if decision.verdict != "allowed":
            metrics.connector_refused.labels(self.name, decision.verdict).inc()
            log("openclaw:connector:refused", level="info", connector=self.name, sender_id=sender_id,
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
            yield self._reply_directly(chat_id, BUSY_REPLY, f"busy:{message_id}")
            return "busy"
        return "duplicate" if duplicate else "accepted"

    def malformed(self, what: str, detail: str) -> None:
        """A payload we could not use: logged and skipped; the connection goes on."""
        metrics.connector_refused.labels(self.name, "malformed").inc()
        log("openclaw:connector:malformed", level="warn", connector=self.name, what=what, detail=detail[:200])

    def _reply_directly(self, chat_id: str, text: str, dedupe_key: str) -> Deferred:
        """Refusals go out now, best effort: they answer no durable event."""
        d = self.send_text(chat_id, text, dedupe_key)
        d.addErrback(lambda f: log("openclaw:connector:reply-failed", level="warn", connector=self.name,
                                   error=repr(f.value)))
        return d

    # Outbound

    def deliver(self, item: OutboxItem) -> Deferred:
        """
        The outbox deliverer of this connector's channel: ``True`` when sent;
        a failure makes the outbox retry with backoff.
        """
        if self.state == FAILED:
            raise NotConnected(f"{self.name} connector failed: {self.last_error}")
        chat_id = item.session_id.split(":", 1)[1]
        d = self.send_text(chat_id, item.text, item.dedupe_key)

        def sent(_: Any) -> bool:
            metrics.connector_messages.labels(self.name, "out").inc()
            return True

        def failed(failure: Any) -> Any:
            metrics.connector_send_failures.labels(self.name).inc()
            return failure

        return d.addCallbacks(sent, failed)

    # Status

    def is_connected(self) -> bool:
        return self.state == CONNECTED

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.is_connected(),
            "state": self.state,
            "last_receive": iso(self.last_receive),
            "last_error": self.last_error,
            "reconnects": self.reconnects,
        }

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
