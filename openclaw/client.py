"""
A gateway client for the ``openclaw send`` and ``openclaw chat`` commands:
connect with the token, send requests, receive responses and pushed events.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Mapping

import orjson
from openclaw.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)
from twisted.internet.defer import Deferred

from openclaw import runfile
from openclaw.config import config_path, load_config


class GatewayError(Exception):
    """The gateway answered with an error: ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message or code

    @property
    def terminal(self) -> bool:
        """Retrying will not help (a wrong token): a terminal client should stop and say so."""
        return self.code in TERMINAL_CODES


# Gateway error codes no retry can fix.
TERMINAL_CODES = frozenset({"unauthorized"})


def check_gateway_url(url: str) -> str:
    """``url`` if it is a ws:// or wss:// URL, else ``ValueError`` saying what is expected."""
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"the gateway URL must start with ws:// or wss://, got {url!r}")
    return url


def explain(failure: Any, timeout: float | None = None) -> str:
    """One line for a failed gateway call: the gateway's message, a timeout, or the connection's end."""
    from twisted.internet.defer import CancelledError, TimeoutError

    if failure.check(GatewayError):
        return failure.value.message
    if failure.check(TimeoutError, CancelledError):
        return f"no answer from the daemon within {timeout:g}s" if timeout is not None else "timed out"
    return failure.getErrorMessage() or type(failure.value).__name__


def gateway_url(explicit: str | None, home: str, environ: Mapping[str, str] = os.environ) -> str:
    """
    ``--gateway``, else ``OPENCLAW_GATEWAY_URL``, else where the running
    daemon says it listens (``<home>/daemon.json``), else the config found
    the daemon's way (``config_path``; a broken one raises ``ConfigError``),
    else the default port.
    """
    if explicit:
        return check_gateway_url(explicit)
    if environ.get("OPENCLAW_GATEWAY_URL"):
        return check_gateway_url(environ["OPENCLAW_GATEWAY_URL"])
    running = runfile.read(home)
    if running and running.get("gateway"):
        return running["gateway"]
    listen = load_config(config_path(None, home, environ), environ).gateway.listen
    return endpoint_url("ws", listen, "18789")


def endpoint_url(scheme: str, listen: str, default_port: str) -> str:
    """The URL a client on this machine uses for a ``tcp:PORT[:interface=ADDR]`` endpoint."""
    parts = listen.split(":")
    host = "127.0.0.1"
    for part in parts[2:]:
        if part.startswith("interface=") and part[len("interface="):] not in ("", "0.0.0.0", "::"):
            host = part[len("interface="):]
    port = parts[1] if len(parts) > 1 and parts[1].isdigit() else default_port
    return runfile.address_url(scheme, host, int(port))


def read_token(home: str, environ: Mapping[str, str] = os.environ) -> str:
    """
    ``OPENCLAW_GATEWAY_TOKEN``, else ``gateway.token`` of the config found
    the daemon's way, else ``<home>/gateway.token`` (``OSError`` if missing).
    """
    if environ.get("OPENCLAW_GATEWAY_TOKEN"):
        return environ["OPENCLAW_GATEWAY_TOKEN"]
    configured = load_config(config_path(None, home, environ), environ).gateway.token
    if configured:
        return configured
    with open(os.path.join(home, "gateway.token"), encoding="utf-8") as f:
        return f.read().strip()


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._received(orjson.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(code, reason)


class _Factory(WebSocketClientFactory):
    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        # No protocol was ever built, so onClose will not say it: say it here.
        self.client._closed(None, reason.getErrorMessage())


class GatewayClient:
    """One connection; ``on_event(name, payload)`` receives pushed events."""

    def __init__(self, url: str, token: str, on_event: Callable[[str, dict], None], client: str | None = None) -> None:
        self.url = url
        self.token = token
        self.on_event = on_event
        self.client = client
        self.session: str | None = None
        self.closed = Deferred()
        self._ids = itertools.count(1)
        self._waiting: dict[str, Deferred] = {}
        self._connected: Deferred | None = None
        self._protocol: _Protocol | None = None

    def connect(self, reactor: Any) -> Deferred:
        """Open the connection and authenticate; fires with the ``connect`` payload."""
        factory = _Factory(self.url)
        factory.protocol = _Protocol
        factory.client = self
        self._connected = Deferred()
        connectWS(factory, timeout=10)
        d = self._connected
        d.addCallback(lambda _: self.request("connect", {"token": self.token, **({"client": self.client} if self.client else {})}))
        d.addCallback(self._authenticated)
        return d

    def _authenticated(self, payload: dict) -> dict:
        self.session = payload["session"]
        return payload

    def request(self, method: str, params: dict | None = None) -> Deferred:
        request_id = str(next(self._ids))
        frame = {"type": "req", "id": request_id, "method": method, "params": params or {}}
        self._waiting[request_id] = d = Deferred()
        self._protocol.sendMessage(orjson.dumps(frame), isBinary=False)
        return d

    def close(self) -> Deferred:
        if self._protocol is not None:
            self._protocol.sendClose(1000)
        return self.closed

    def _opened(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self._connected.callback(None)

    def _received(self, frame: dict) -> None:
        if frame.get("type") == "event":
            self.on_event(frame.get("event", ""), frame.get("payload") or {})
            return
        d = self._waiting.pop(str(frame.get("id")), None)
        if d is None:
            return
        if frame.get("ok"):
            d.callback(frame.get("payload"))
        else:
            error = frame.get("error") or {}
            d.errback(GatewayError(error.get("code", "?"), error.get("message", "")))

    def _closed(self, code: int | None, reason: str | None) -> None:
        if code is None:  # never connected: the reason is the socket's
            error = ConnectionError(f"cannot connect to the gateway at {self.url}: {reason}")
        else:
            error = ConnectionError(f"gateway connection closed ({code}{': ' + reason if reason else ''})")
        if self._connected is not None and not self._connected.called:
            self._connected.errback(error)
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(error)
        if not self.closed.called:
            self.closed.callback(code)


def send_and_wait(
    reactor: Any, url: str, token: str, text: str, timeout: float = 120.0, client: str | None = None,
) -> Deferred:
    """Send one message and fire with the text of its ``chat.reply``."""
    reply: Deferred = Deferred()
    sent: dict[str, str] = {}
    early: dict[str, str] = {}

    def on_event(name: str, payload: dict) -> None:
        if name != "chat.reply":
            return
        if sent.get("event_id") == payload.get("reply_to"):
            if not reply.called:
                reply.callback(payload.get("text", ""))
        else:
            early[str(payload.get("reply_to"))] = payload.get("text", "")

    connection = GatewayClient(url, token, on_event, client=client)

    def acknowledged(payload: dict) -> Deferred:
        sent["event_id"] = payload["event_id"]
        if payload["event_id"] in early and not reply.called:
            reply.callback(early[payload["event_id"]])
        return reply

    d = connection.connect(reactor)
    d.addCallback(lambda _: connection.request("chat.send", {"text": text}))
    d.addCallback(acknowledged)
    d.addTimeout(timeout, reactor)

    def done(result: Any) -> Any:
        connection.close()
        return result

    d.addBoth(done)
    return d

