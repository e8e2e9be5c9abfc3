"""
Discord: the Gateway v10 WebSocket for inbound messages, REST for replies.

One ``_Connection`` is one gateway WebSocket: HELLO starts the heartbeat,
then IDENTIFY starts a session or RESUME continues the one we had (the
session id and last sequence live on the connector, so a dropped connection
resumes and Discord replays what we missed).  A heartbeat falling due while
the previous one is unacknowledged means the connection is a zombie: it is
closed and counted as a stall.  Close codes decide between resuming, a new
session and giving up (``discord_protocol.close_action``).
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import orjson
from openclaw.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import deferLater

from openclaw import __version__
from openclaw.connectors import discord_protocol as proto
from openclaw.connectors.base import ConnectorService, Terminal
from openclaw.config.connectors import credential
from openclaw.connectors.split import split_text
from openclaw.eliotutil import log, message_type, typed
from openclaw.http import HTTPClient
from openclaw.pipeline import ShuttingDown

CONNECT_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0
MAX_FRAME = 16 * 1024 * 1024
REST_TIMEOUT = 30.0
MAX_RATE_LIMITED = 5
# Closing with 1000 ends the session (the bot goes offline at once); any
# other code keeps it resumable.
CLOSE_FOR_GOOD, CLOSE_TO_RESUME = 1000, 4000
MESSAGES_ROUTE = "POST /channels/{channel_id}/messages"


DISCORD_OPENED = message_type("openclaw:discord:opened", [typed("url", [str], "the gateway URL")],
                              "the gateway WebSocket is open", "debug")
DISCORD_RECONNECT_REQUESTED = message_type("openclaw:discord:reconnect-requested", [],
                                           "Discord asked us to reconnect (op 7): resuming")
DISCORD_RESUME = message_type("openclaw:discord:resume", [
    typed("session_id", [str, None], "the gateway session resumed"), typed("seq", [int, None], "the last sequence seen"),
], "resuming the gateway session")
DISCORD_IDENTIFY = message_type("openclaw:discord:identify", [typed("intents", [int], "the intents asked for")],
                                "starting a new gateway session")
DISCORD_INVALID_SESSION = message_type("openclaw:discord:invalid-session", [
    typed("resumable", [bool], "whether Discord allows a resume"),
], "Discord invalidated the session (op 9)", "warn")
DISCORD_CLOSED = message_type("openclaw:discord:closed", [
    typed("code", [int, None], "the close code"), typed("reason", [str], "the close reason, at most 200 characters"),
    typed("then", [str], "what follows: resume, new session, terminal..."),
], "the gateway WebSocket closed (info when openclaw closed it, else warn)", "warn")
DISCORD_RATE_LIMITED = message_type("openclaw:discord:rate-limited", [
    typed("channel_id", [str], "the channel sent to"), typed("retry_after", [int, float], "seconds waited"),
    typed("scope", [str], "Discord's x-ratelimit-scope"),
], "a send answered 429: waiting it out", "warn")
DISCORD_ZOMBIE = message_type("openclaw:discord:zombie", [
    typed("heartbeat_interval", [int, float], "seconds between heartbeats"),
], "a heartbeat went unacknowledged: the connection is torn down", "warn")
DISCORD_RECEIVE_FAILED = message_type("openclaw:discord:receive-failed", [
    typed("message_id", [str], "the message's id"), typed("error", [str], "why"),
], "a message could not be recorded (warn while draining: it is lost; else error)", "error")


class DiscordHTTPError(Exception):
    """A REST call failed: the outbox retries the delivery."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def _endpoint(reactor: Any, url: str) -> Any:
    """A TCP endpoint for ``ws://`` and a TLS one (verifying the host name) for ``wss://``."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    endpoint = HostnameEndpoint(reactor, host, parts.port or (443 if secure else 80), timeout=CONNECT_TIMEOUT)
    return wrapClientTLS(optionsForClientTLS(host), endpoint) if secure else endpoint


class _GatewayProtocol(WebSocketClientProtocol):
    """Hands the opening, every frame and the close to its ``_Connection``."""

    def onOpen(self) -> None:
        self.factory.connection.opened()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.connection.received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connection.closed(code, reason or "")


class _Connection:
    """
    One gateway WebSocket.  ``done`` fires when it closes and fails with
    ``Terminal`` for the close codes that forbid reconnecting; cancelling it
    closes the socket (resumably, unless the connector is stopping).
    """

    def __init__(self, connector: "DiscordConnector", url: str) -> None:
        self.connector = connector
        self.url = url
        self.done: Deferred = Deferred(canceller=self._cancel)
        self.protocol: Any = None
        self._open = False
        self._over = False
        self._connecting: Deferred | None = None
        self._beat: Any = None
        self._interval = 0.0
        self._acked = True
        self._identify_later: Any = None
        self._after_close: str | None = None

    def start(self) -> None:
        factory = WebSocketClientFactory(self.url, reactor=self.connector.reactor,
                                         useragent=f"openclaw/{__version__}")
        factory.protocol = _GatewayProtocol
        factory.connection = self
        factory.setProtocolOptions(openHandshakeTimeout=HANDSHAKE_TIMEOUT, closeHandshakeTimeout=CLOSE_TIMEOUT,
                                   maxMessagePayloadSize=MAX_FRAME, maxFramePayloadSize=MAX_FRAME)
        self._connecting = _endpoint(self.connector.reactor, self.url).connect(factory)
        self._connecting.addCallbacks(self._connected, self._unreachable)

    def _connected(self, protocol: Any) -> None:
        self._connecting = None
        self.protocol = protocol
        if self._over:
            protocol.dropConnection(abort=True)

    def _unreachable(self, failure: Any) -> None:
        self._connecting = None
        if not self._over:
            self._over = True
            self.done.errback(failure)

    # Frames in

    def opened(self) -> None:
        self._open = True
        log(DISCORD_OPENED, level="debug", url=self.url)

    def received(self, payload: bytes, binary: bool) -> None:
        if self._over:
            return
        self.connector.poke()
        try:
            message = orjson.loads(payload) if not binary else None
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("op"), int):
            self.connector.malformed("gateway frame", "not a JSON object with an op" + (" (binary)" if binary else ""))
            return
        op, d = message["op"], message.get("d")
        if op == proto.DISPATCH:
            if isinstance(message.get("s"), int):
                self.connector.seq = message["s"]
            self.connector.dispatched(message.get("t"), d)
        elif op == proto.HEARTBEAT_ACK:
            self._acked = True
        elif op == proto.HEARTBEAT:
            self._send(proto.heartbeat(self.connector.seq))
        elif op == proto.HELLO:
            self._hello(d)
        elif op == proto.RECONNECT:
            log(DISCORD_RECONNECT_REQUESTED, level="info")
            self.close(CLOSE_TO_RESUME, proto.RESUME_SESSION)
        elif op == proto.INVALID_SESSION:
            self._invalid_session(d is True)
        else:
            self.connector.malformed("gateway frame", f"unknown op {op}")

    def _hello(self, d: Any) -> None:
        interval = d.get("heartbeat_interval") if isinstance(d, dict) else None
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            self.connector.malformed("HELLO", f"no heartbeat_interval in {d!r}")
            self.close(CLOSE_TO_RESUME, proto.RESUME_SESSION)
            return
        self._interval = interval / 1000.0
        self._schedule_beat(proto.first_heartbeat_delay(self._interval, self.connector.rng()))
        self._begin_session(resume=True)

    def _begin_session(self, resume: bool) -> None:
        """RESUME when there is a session to continue, else IDENTIFY (the token is never logged)."""
        c = self.connector
        if resume and c.session_id is not None:
            log(DISCORD_RESUME, level="info", session_id=c.session_id, seq=c.seq)
            self._send(proto.resume(c.token, c.session_id, c.seq))
        else:
            log(DISCORD_IDENTIFY, level="info", intents=proto.INTENTS)
            self._send(proto.identify(c.token))

    def _invalid_session(self, resumable: bool) -> None:
        """Discord asks for a short random wait before identifying again."""
        log(DISCORD_INVALID_SESSION, level="warn", resumable=resumable)
        if resumable and self.connector.session_id is not None:
            self._begin_session(resume=True)
            return
        self.connector.forget_session()
        low, high = self.connector.identify_wait
        self._identify_later = self.connector.clock.callLater(
            low + (high - low) * self.connector.rng(), self._begin_session, False)

    # Heartbeat

    def _schedule_beat(self, delay: float) -> None:
        self._beat = self.connector.clock.callLater(delay, self._heartbeat)

    def _heartbeat(self) -> None:
        if not self._acked:
            self.connector.zombie(self.done, self._interval)
            return
        self._acked = False
        self._send(proto.heartbeat(self.connector.seq))
        self._schedule_beat(self._interval)

    # Frames out and the end

    def _send(self, payload: dict[str, Any]) -> None:
        if self._open and not self._over:
            self.protocol.sendMessage(orjson.dumps(payload))

    def close(self, code: int, then: str) -> None:
        """Close from our side; ``then`` (resume or identify) overrides what the echoed code would mean."""
        self._after_close = then
        self._stop_timers()
        if self.protocol is not None and self.protocol.state == WebSocketProtocol.STATE_OPEN:
            self.protocol.sendClose(code)
        elif self.protocol is not None:
            self.protocol.dropConnection(abort=True)

    def closed(self, code: int | None, reason: str) -> None:
        self._stop_timers()
        if self._over:
            return
        self._over = True
        if not self._open:
            self.done.errback(ConnectionError(f"gateway handshake failed: {reason}"))
            return
        action = self._after_close or proto.close_action(code)
        log(DISCORD_CLOSED, level="info" if self._after_close else "warn", code=code,
            reason=reason[:200], then=action)
        if action == proto.TERMINAL:
            self.done.errback(Terminal(f"{proto.TERMINAL_CODES[code]} (gateway close {code})"))
            return
        if action == proto.IDENTIFY_AGAIN:
            self.connector.forget_session()
        self.done.callback(None)

    def _stop_timers(self) -> None:
        for call in (self._beat, self._identify_later):
            if call is not None and call.active():
                call.cancel()
        self._beat = self._identify_later = None

    def _cancel(self, _: Deferred) -> None:
        """Stall, zombie or shutdown: the socket goes; ``done`` fails with CancelledError."""
        self._over = True
        if self._connecting is not None:
            self._connecting.cancel()
        self.close(CLOSE_FOR_GOOD if self.connector.stopping() else CLOSE_TO_RESUME, proto.RESUME_SESSION)


class DiscordRest:
    """
    The REST calls the connector makes, waiting out rate limits on
    ``clock`` before each request (``discord_protocol.RateLimits``).
    """

    def __init__(self, reactor: Any, clock: Any, api_url: str, token: str) -> None:
        self.reactor = reactor
        self.clock = clock
        self.api_url = api_url.rstrip("/")
        self.limits = proto.RateLimits()
        # Not pooled, as before: each REST call on a connection of its own.
        self.http = HTTPClient(reactor, "discord", clock=clock, persistent=False, timeout=REST_TIMEOUT)
        self._headers = {
            "Authorization": f"Bot {token}", "Content-Type": "application/json",
            "User-Agent": f"DiscordBot (https://github.com/openclaw/openclaw, {__version__})",
        }

    @inlineCallbacks
    def create_message(self, channel_id: str, content: str, nonce: str) -> Any:
        """
        Post one message (at most 2,000 characters).  :return: a Deferred
        firing with Discord's message object; failing with
        ``DiscordHTTPError`` (the caller's retry decides what next).
        """
        body = orjson.dumps({"content": content, "nonce": nonce, "enforce_nonce": True})
        url = f"{self.api_url}/channels/{channel_id}/messages"
        for _ in range(MAX_RATE_LIMITED):
            wait = self.limits.delay(MESSAGES_ROUTE, channel_id, self.clock.seconds())
            if wait > 0:
                yield deferLater(self.clock, wait, lambda: None)
            status, headers, payload = yield self._post(url, body)
            if status == 429:
                wait = self.limits.limited(MESSAGES_ROUTE, channel_id, payload, headers, self.clock.seconds())
                log(DISCORD_RATE_LIMITED, level="warn", channel_id=channel_id, retry_after=wait,
                    scope=headers.get("x-ratelimit-scope", ""))
                continue
            self.limits.update(MESSAGES_ROUTE, channel_id, headers, self.clock.seconds())
            if 200 <= status < 300:
                return payload
            detail = payload.get("message", "") if isinstance(payload, dict) else ""
            raise DiscordHTTPError(status, str(detail)[:200] or "no detail")
        raise DiscordHTTPError(429, f"still rate limited after {MAX_RATE_LIMITED} tries")

    @inlineCallbacks
    def _post(self, url: str, body: bytes) -> Any:
        response = yield self.http.request("POST", url, data=body, headers=self._headers)
        try:
            payload = response.json() if response.body else None
        except ValueError:
            payload = None
        return response.status, response.headers, payload


class DiscordConnector(ConnectorService):
    """
    Sessions are ``discord:<channel_id>``; a DM channel is one person, a
    guild channel everyone in it who mentions the bot.

    :param reactor: for the network (and time, unless ``clock`` is given).
    :param identify_wait: the range of the random wait before identifying
        again after an invalid session.
    """

    def __init__(
        self, reactor: Any, config: Any, pipeline: Any, store: Any, notifier: Any = None,
        environ: Mapping[str, str] = os.environ, clock: Any = None, rng: Callable[[], float] = random.random,
        identify_wait: tuple[float, float] = (1.0, 5.0),
    ) -> None:
        super().__init__("discord", clock or reactor, config, pipeline, store, notifier, rng)
        self.reactor = reactor
        self.token = credential(config, "token", environ)
        self.identify_wait = identify_wait
        self.rest = DiscordRest(reactor, self.clock, config.api_url, self.token)
        self.session_id: str | None = None
        self.seq: int | None = None
        self.resume_url: str | None = None
        self.bot_id = ""

    def run_once(self) -> Deferred:
        if not self.token:
            return fail(Terminal(f"no Discord bot token: set connectors.discord.token or {self.config.token_env}"))
        url = self.resume_url if self.session_id is not None and self.resume_url else self.config.gateway_url
        connection = _Connection(self, url)
        connection.start()
        return connection.done

    def stopping(self) -> bool:
        return self._stopping

    def forget_session(self) -> None:
        self.session_id = self.seq = self.resume_url = None

    def zombie(self, connection: Deferred, interval: float) -> None:
        """
        A heartbeat fell due unacknowledged: a zombie connection, torn down
        and counted as a stall.
        """
        log(DISCORD_ZOMBIE, level="warn", heartbeat_interval=interval)
        self.stall(f"heartbeat not acknowledged within {interval:g}s")

    def dispatched(self, kind: Any, d: Any) -> None:
        if kind == "READY":
            self._ready(d)
        elif kind == "RESUMED":
            self.up()
        elif kind == "MESSAGE_CREATE":
            self._message(d)

    def _ready(self, d: Any) -> None:
        try:
            session_id, resume_gateway_url, bot_id = d["session_id"], d["resume_gateway_url"], d["user"]["id"]
        except (KeyError, TypeError):
            self.malformed("READY", "without session_id, resume_gateway_url or user.id")
            return
        self.session_id = str(session_id)
        self.resume_url = proto.resume_url(str(resume_gateway_url), self.config.gateway_url)
        self.bot_id = str(bot_id)
        self.up()

    def _message(self, d: Any) -> None:
        try:
            found = proto.inbound(d, self.bot_id)
        except proto.Malformed as e:
            self.malformed("MESSAGE_CREATE", str(e))
            return
        if found is None:
            return
        received = self.receive_message(found.channel_id, found.sender_id, found.text, found.message_id,
                                        found.sender_name)
        received.addErrback(self._receive_failed, found.message_id)

    def _receive_failed(self, failure: Any, message_id: str) -> None:
        # Discord keeps no backlog past a session: a message refused while draining is gone.
        level = "warn" if failure.check(ShuttingDown) else "error"
        log(DISCORD_RECEIVE_FAILED, level=level, message_id=message_id, error=repr(failure.value))

    @inlineCallbacks
    def send_text(self, chat_id: str, text: str, dedupe_key: str) -> Any:
        """Each part carries a nonce Discord enforces, so a retried delivery posts no part twice."""
        for index, part in enumerate(split_text(text, proto.MESSAGE_LIMIT)):
            yield self.rest.create_message(chat_id, part, proto.nonce(dedupe_key, index))

    def health(self) -> dict[str, Any]:
        return {**super().health(), "resumable": self.session_id is not None}
