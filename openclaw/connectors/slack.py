"""
Slack through Socket Mode: events arrive on a WebSocket that the app opens
with its app-level token, so openclaw needs no public URL; replies go out
with ``chat.postMessage`` and the bot token.

Slack re-sends an event envelope until it is acknowledged, so an envelope is
acknowledged only once its message is durable (``receive_message`` fired):
recording is a local write, well within Slack's 3 s (a refused sender's
reply is posted before the ack, so a slow Slack may have that envelope sent
twice and the refusal repeated; nothing is recorded for it).  A message
that reaches us twice (a re-sent envelope, or the same post as both
``message`` and ``app_mention``) has one platform id, ``<channel>:<ts>``, and
is recorded once.  Which events are answered is decided by
``inbound_message``, kept pure so tests drive it without a network.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from openclaw.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionLost
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import deferLater

from openclaw.connectors.base import ConnectorService, Terminal
from openclaw.config.connectors import SlackConfig, credential
from openclaw.connectors.split import split_text
from openclaw.eliotutil import log, message_type, typed
from openclaw.http import HTTPClient, RateLimit
from openclaw.pipeline import ShuttingDown

TEXT_LIMIT = 40_000
REQUEST_TIMEOUT = 30.0
MAX_RATE_WAIT = 60.0
"""A ``Retry-After`` longer than this fails the send (the outbox retries later) rather than holding it."""
RATE_RETRIES = 3
RATE_LIMIT = RateLimit(RATE_RETRIES, MAX_RATE_WAIT, default=1.0)
TERMINAL_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "not_allowed_token_type", "missing_scope",
})
"""Web API errors no retry can fix: the token is wrong, revoked or lacks a scope."""
REMEMBERED_SENDS = 1000
"""Partly sent replies whose progress is kept for the outbox's retry (oldest forgotten first)."""


SLACK_DISCONNECT = message_type("openclaw:slack:disconnect", [typed("reason", [str], "Slack's reason")],
                                "Slack asked us to reconnect")
SLACK_NOT_ACKNOWLEDGED = message_type("openclaw:slack:not-acknowledged", [typed("reason", [str], "why")],
                                      "an envelope left for Slack to re-send (info while stopping, else error)")


class SlackError(Exception):
    """A Web API call answered ``ok: false`` (``error`` is Slack's code) or not as the API does."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error


class Malformed(ValueError):
    """An event we cannot use; the reason is safe to log."""


@dataclass(frozen=True)
class Inbound:
    """A message openclaw should answer."""

    channel: str
    user: str
    text: str
    ts: str

    @property
    def message_id(self) -> str:
        return f"{self.channel}:{self.ts}"


def unescape(text: str) -> str:
    """Slack escapes exactly these three characters in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """So a reply cannot spell a mention (``<!channel>``) or a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escaped_length(text: str) -> int:
    """The 40,000-character limit applies to the text as sent."""
    return len(escape(text))


def inbound_message(event: Any, bot_user_id: str) -> Inbound | None:
    """
    The message in an Events API ``event`` that openclaw answers: a person's
    plain direct message, or a mention of the bot anywhere (the mention
    itself stripped).  ``None`` for everything else (bots, ourselves, edits,
    joins, channel chatter); ``Malformed`` when a field is missing or odd.
    """
    if not isinstance(event, dict):
        raise Malformed("event is not an object")
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return None
    if event.get("bot_id") or "subtype" in event:
        return None
    if kind == "message" and event.get("channel_type") != "im":
        return None
    fields = {name: event.get(name) for name in ("channel", "user", "text", "ts")}
    for name, value in fields.items():
        if not isinstance(value, str) or (name != "text" and not value):
            raise Malformed(f"{kind} event without a usable {name}")
    if fields["user"] == bot_user_id:
        return None
    text = re.sub(rf"\s*<@{re.escape(bot_user_id)}(?:\|[^>]*)?>\s*", " ", fields["text"])
    text = unescape(text).strip()
    if not text:
        return None
    return Inbound(fields["channel"], fields["user"], text, fields["ts"])


class _SocketProtocol(WebSocketClientProtocol):
    """Hands every frame to its ``_Link``; after hello, pings and pongs show the link alive too."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.connector.frame_received(self.factory, payload)

    def onPing(self, payload: bytes) -> None:
        super().onPing(payload)
        if self.factory.hello:
            self.factory.connector.poke()

    def onPong(self, payload: bytes) -> None:
        if self.factory.hello:
            self.factory.connector.poke()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.closed(wasClean, code)


class _Link(WebSocketClientFactory):
    """
    One Socket Mode connection.  ``ended`` fires when it closes (fails
    unless closed on purpose); cancelling ``ended`` drops the connection.
    """

    protocol = _SocketProtocol

    def __init__(self, url: str, connector: SlackConnector) -> None:
        super().__init__(url, reactor=connector.clock)
        self.connector = connector
        self.socket: _SocketProtocol | None = None
        self.hello = False
        self.ending: Exception | None = None
        self.closing = False
        self.ended: Deferred = Deferred(self._cancel)

    def _cancel(self, _: Deferred) -> None:
        if self.socket is not None:
            self.socket.dropConnection(abort=True)

    def send(self, frame: dict) -> bool:
        """Send ``frame`` if the connection is still open; :return: whether it was."""
        if self.socket is None or self.socket.state != WebSocketClientProtocol.STATE_OPEN:
            return False
        self.socket.sendMessage(json.dumps(frame).encode())
        return True

    def close(self, ending: Exception | None = None) -> None:
        """Close on purpose: ``ended`` fires, or fails with ``ending``."""
        self.closing, self.ending = True, ending
        if self.socket is not None:
            self.socket.sendClose(1000)

    def closed(self, clean: bool, code: int | None) -> None:
        self.socket = None
        if self.ended.called:
            return
        if self.ending is not None:
            self.ended.errback(self.ending)
        elif self.closing:
            self.ended.callback(None)
        else:
            self.ended.errback(ConnectionLost(f"Socket Mode connection closed (code {code}, clean {clean})"))


class SlackConnector(ConnectorService):
    """
    :param reactor: for the network and time (tests pass the real reactor).
    :param sleep: waits out a ``Retry-After`` (tests record the delays).
    """

    def __init__(
        self, reactor: Any, config: SlackConfig, pipeline: Any, store: Any, notifier: Any = None,
        environ: Mapping[str, str] = os.environ, rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Deferred] | None = None,
    ) -> None:
        super().__init__("slack", reactor, config, pipeline, store, notifier, rng)
        self.app_token = credential(config, "app_token", environ)
        self.bot_token = credential(config, "bot_token", environ)
        self.sleep = sleep or (lambda delay: deferLater(reactor, delay))
        # Not pooled, as before: each Web API call on a connection of its own.
        self.http = HTTPClient(reactor, "slack", persistent=False, timeout=REQUEST_TIMEOUT, sleep=self.sleep)
        self.bot_user_id: str | None = None
        self._order = DeferredLock()
        self._sent_parts: dict[str, int] = {}

    # The connection

    @inlineCallbacks
    def run_once(self) -> Any:
        """``auth.test`` once (the bot's user id spells its mentions), then a fresh Socket Mode URL each time."""
        if not self.app_token or not self.bot_token:
            raise Terminal(f"missing token: set {self.config.app_token_env} and {self.config.bot_token_env}")
        if self.bot_user_id is None:
            identity = yield self._call_or_terminal("auth.test", self.bot_token)
            user_id = identity.get("user_id")
            if not isinstance(user_id, str) or not user_id:
                raise SlackError("auth.test", "no user_id")
            self.bot_user_id = user_id
        opened = yield self._call_or_terminal("apps.connections.open", self.app_token)
        url = opened.get("url")
        if not isinstance(url, str) or not re.match(r"wss?://", url):
            raise SlackError("apps.connections.open", "no WebSocket url")
        link = _Link(url, self)
        # Our pings draw pongs that keep a quiet link from looking stalled; the
        # watchdog alone judges silence (Autobahn's own timers are whole seconds).
        link.setProtocolOptions(autoPingInterval=self.config.stall_timeout / 2)
        endpoint = HostnameEndpoint(self.clock, link.host, link.port, timeout=REQUEST_TIMEOUT)
        if link.isSecure:
            endpoint = wrapClientTLS(optionsForClientTLS(link.host), endpoint)
        link.socket = yield endpoint.connect(link)
        yield link.ended

    def frame_received(self, link: _Link, payload: bytes) -> None:
        self.poke()
        try:
            frame = json.loads(payload)
        except (ValueError, RecursionError):
            self.malformed("frame", "not JSON")
            return
        if not isinstance(frame, dict):
            self.malformed("frame", "not an object")
            return
        kind = frame.get("type")
        if kind == "hello":
            if not link.hello:
                link.hello = True
                self.up()
        elif kind == "disconnect":
            reason = str(frame.get("reason"))[:60]
            log(SLACK_DISCONNECT, reason=reason)
            if reason == "link_disabled":
                link.close(Terminal("Socket Mode was turned off for the app (link_disabled)"))
            else:
                link.close()
        elif isinstance(frame.get("envelope_id"), str) and frame["envelope_id"]:
            self._envelope(link, frame["envelope_id"], kind, frame.get("payload"))
        else:
            self.malformed("frame", f"unexpected frame type {str(kind)[:40]!r}")

    def _envelope(self, link: _Link, envelope_id: str, kind: Any, payload: Any) -> None:
        """Acknowledge what we do not answer now; what we answer, once it is durable (in order)."""
        if kind != "events_api":
            link.send({"envelope_id": envelope_id})
            return
        try:
            if not isinstance(payload, dict):
                raise Malformed("envelope without a payload")
            message = inbound_message(payload.get("event"), self.bot_user_id or "")
        except Malformed as e:
            self.malformed("event", str(e))
            message = None
        if message is None:
            link.send({"envelope_id": envelope_id})
            return
        self._order.run(self._take, link, envelope_id, message)

    def _take(self, link: _Link, envelope_id: str, message: Inbound) -> Deferred:
        d = self.receive_message(message.channel, message.user, message.text, message.message_id)
        d.addCallbacks(lambda _: link.send({"envelope_id": envelope_id}), self._not_taken)
        return d

    def _not_taken(self, failure: Any) -> None:
        """Not acknowledged: Slack sends the envelope again (after a restart, to the new connection)."""
        if failure.check(ShuttingDown):
            log(SLACK_NOT_ACKNOWLEDGED, reason="shutting down")
        else:
            log(SLACK_NOT_ACKNOWLEDGED, level="error", reason=repr(failure.value))

    def drain(self) -> Deferred:
        """Envelopes being recorded finish (and are acknowledged) first."""
        return self._order.acquire().addCallback(lambda lock: lock.release())

    # The Web API

    @inlineCallbacks
    def _call_or_terminal(self, method: str, token: str) -> Any:
        try:
            return (yield self.call(method, token, {}))
        except SlackError as e:
            if e.error in TERMINAL_ERRORS:
                raise Terminal(str(e)) from None
            raise

    @inlineCallbacks
    def call(self, method: str, token: str, body: dict) -> Any:
        """
        POST one Web API method; fire with its JSON answer when ``ok``, else
        fail with ``SlackError``.  A 429 is waited out ``RATE_RETRIES`` times.
        """
        response = yield self.http.request(
            "POST", f"{self.config.api_url}/{method}", json=body, rate_limit=RATE_LIMIT,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"})
        if response.status == 429:
            raise SlackError(method, f"ratelimited (retry after {1.0 if response.retry_after is None else response.retry_after:g}s)")
        if response.status != 200:
            raise SlackError(method, f"HTTP {response.status}")
        try:
            data = response.json()
        except ValueError:
            raise SlackError(method, "answer is not JSON") from None
        if not isinstance(data, dict):
            raise SlackError(method, "answer is not an object")
        if data.get("ok") is not True:
            raise SlackError(method, str(data.get("error") or "not ok")[:80])
        return data

    @inlineCallbacks
    def send_text(self, chat_id: str, text: str, dedupe_key: str) -> Any:
        """
        Post ``text`` in parts of at most 40,000 characters (as escaped).  A
        retry after a failed part resumes after the parts already posted.
        """
        parts = split_text(text, TEXT_LIMIT, escaped_length)
        done = self._sent_parts.pop(dedupe_key, 0)
        for number in range(done, len(parts)):
            try:
                yield self.call("chat.postMessage", self.bot_token, {"channel": chat_id, "text": escape(parts[number])})
            except Exception as e:
                if number:
                    self._remember(dedupe_key, number)
                if isinstance(e, SlackError) and e.error in TERMINAL_ERRORS:
                    self.credentials_refused(f"chat.postMessage: {e}")  # a bot token revoked while running
                raise

    def _remember(self, dedupe_key: str, parts: int) -> None:
        if len(self._sent_parts) >= REMEMBERED_SENDS:
            self._sent_parts.pop(next(iter(self._sent_parts)))
        self._sent_parts[dedupe_key] = parts
