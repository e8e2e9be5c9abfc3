"""
A local Slack for tests: the Web API methods the connector calls
(``auth.test``, ``apps.connections.open``, ``chat.postMessage``) over HTTP,
and the Socket Mode WebSocket, each on its own 127.0.0.1 ephemeral port.

Like Slack, it keeps every envelope until the app acknowledges it and sends
the unacknowledged ones again on each new connection, after the hello.
"""

from __future__ import annotations

import json
from itertools import count
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from openclaw.config.connectors import SlackConfig
from tests.waiting import until  # noqa: F401 (the tests import it from here)

APP_TOKEN = "xapp-1-A1-SECRET-app-token"
BOT_TOKEN = "xoxb-1-SECRET-bot-token"
BOT_USER = "UBOT"

NORMAL, STALL, SILENT, DISCONNECT = "normal", "stall", "silent", "disconnect"
"""Socket Mode behaviours: serve; accept and send nothing (no hello, no pongs); hello then
nothing; hello then ``disconnect`` (refresh_requested) at once."""




def config(server: SlackServer, **overrides: Any) -> SlackConfig:
    """A connector config pointed at ``server``: tokens set, quick reconnects."""
    values: dict[str, Any] = {
        "enabled": True, "app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": server.api_url,
        "allow_from": ("U1",), "stall_timeout": 5.0, "backoff_max": 0.05,
    }
    values.update(overrides)
    return SlackConfig(**values)


class _WebAPI(Resource):
    isLeaf = True

    def __init__(self, slack: SlackServer) -> None:
        super().__init__()
        self.slack = slack

    def render_POST(self, request: Any) -> bytes:
        method = request.path.decode().rsplit("/", 1)[-1]
        token = (request.getHeader("authorization") or "").removeprefix("Bearer ")
        try:
            body = json.loads(request.content.read() or b"{}")
        except ValueError:
            body = {}
        status, headers, answer = self.slack.answer(method, token, body)
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        request.setHeader("content-type", "application/json; charset=utf-8")
        return json.dumps(answer).encode()


class _SocketMode(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.mode = self.factory.slack.socket_mode
        self.factory.slack.opened(self)

    def onPing(self, payload: bytes) -> None:
        self.factory.slack.pings += 1
        if self.mode not in (STALL, SILENT):
            super().onPing(payload)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.slack.received(json.loads(payload))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if self in self.factory.slack.sockets:
            self.factory.slack.sockets.remove(self)

    def send(self, frame: dict | bytes) -> None:
        self.sendMessage(frame if isinstance(frame, bytes) else json.dumps(frame).encode())


class SlackServer:
    """
    Scripted by attributes: ``errors`` (method -> Slack error to answer),
    ``rate_limited`` (how many ``chat.postMessage`` calls get a 429 with
    ``retry_after``), ``posts_allowed`` (how many more posts succeed before
    ``internal_error``; ``None``: all), ``socket_mode`` (one of the behaviours above, for new
    connections), ``ignore_acks`` (acks lost on the way).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.posted: list[dict] = []
        self.errors: dict[str, str] = {}
        self.rate_limited = 0
        self.retry_after = "3"
        self.posts_allowed: int | None = None
        self.socket_mode = NORMAL
        self.ignore_acks = False
        self.sockets: list[_SocketMode] = []
        self.connections = 0
        self.pings = 0
        self.acks: list[str] = []
        self.pending: dict[str, dict] = {}
        self._ids = count(1)
        self._ports: list[Any] = []
        self._numbers = (0, 0)

    # Lifecycle

    def start(self) -> SlackServer:
        """Listen (again on the same ports after ``stop``)."""
        api = reactor.listenTCP(self._numbers[0], Site(_WebAPI(self)), interface="127.0.0.1")
        factory = WebSocketServerFactory()
        factory.protocol = _SocketMode
        factory.slack = self
        socket = reactor.listenTCP(self._numbers[1], factory, interface="127.0.0.1")
        self._ports = [api, socket]
        self._numbers = (api.getHost().port, socket.getHost().port)
        return self

    def stop(self) -> defer.Deferred:
        """Drop every Socket Mode connection and stop listening (a crash, as the app sees it)."""
        for socket in list(self.sockets):
            socket.dropConnection(abort=True)
        self.sockets.clear()
        ports, self._ports = self._ports, []
        return defer.gatherResults([port.stopListening() for port in ports])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._numbers[0]}/api"

    # The Web API

    def answer(self, method: str, token: str, body: dict) -> tuple[int, dict, dict]:
        self.calls.append((method, token))
        wanted = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if method in self.errors:
            return 200, {}, {"ok": False, "error": self.errors[method]}
        if token != wanted:
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return 200, {}, {"ok": True, "user_id": BOT_USER, "user": "openclaw", "team_id": "T1"}
        if method == "apps.connections.open":
            return 200, {}, {"ok": True, "url": f"ws://127.0.0.1:{self._numbers[1]}/link/?ticket={next(self._ids)}"}
        if method == "chat.postMessage":
            if self.rate_limited > 0:
                self.rate_limited -= 1
                return 429, {"Retry-After": self.retry_after}, {"ok": False, "error": "ratelimited"}
            if self.posts_allowed is not None:
                if self.posts_allowed == 0:
                    return 200, {}, {"ok": False, "error": "internal_error"}
                self.posts_allowed -= 1
            if not isinstance(body.get("channel"), str) or not isinstance(body.get("text"), str):
                return 200, {}, {"ok": False, "error": "invalid_arguments"}
            self.posted.append(body)
            return 200, {}, {"ok": True, "channel": body["channel"], "ts": f"1800000000.{next(self._ids):06d}"}
        return 200, {}, {"ok": False, "error": "unknown_method"}

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    def texts(self, channel: str) -> list[str]:
        return [p["text"] for p in self.posted if p["channel"] == channel]

    # Socket Mode

    def opened(self, socket: _SocketMode) -> None:
        self.connections += 1
        self.sockets.append(socket)
        if socket.mode == STALL:
            return
        socket.send({"type": "hello", "num_connections": len(self.sockets),
                     "debug_info": {"host": "local", "approximate_connection_time": 18060},
                     "connection_info": {"app_id": "A1"}})
        if socket.mode == DISCONNECT:
            socket.send({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "local"}})
            return
        for envelope in self.pending.values():
            envelope["retry_attempt"] += 1
            socket.send(envelope)

    def received(self, frame: Any) -> None:
        if not self.ignore_acks and isinstance(frame, dict) and "envelope_id" in frame:
            self.acks.append(frame["envelope_id"])
            self.pending.pop(frame["envelope_id"], None)

    def _serving(self) -> list[_SocketMode]:
        return [s for s in self.sockets if s.mode in (NORMAL, SILENT)]

    def event(self, event: dict, kind: str = "events_api") -> str:
        """Send ``event`` in a new envelope (kept until acknowledged); :return: its envelope_id."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id, "type": kind, "accepts_response_payload": False,
            "retry_attempt": 0, "retry_reason": "",
            "payload": {"token": "verification", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                        "event_id": f"Ev{envelope_id}", "event_time": 1800000000, "event": event},
        }
        self.pending[envelope_id] = envelope
        for socket in self._serving():
            socket.send(envelope)
        return envelope_id

    def message(self, text: str, user: str = "U1", channel: str = "D1", **extra: Any) -> str:
        """A direct message from ``user``; ``extra`` adds or overrides event fields."""
        event = {"type": "message", "channel": channel, "user": user, "text": text,
                 "ts": f"1800000000.{next(self._ids):06d}", "channel_type": "im", "event_ts": "1800000000.0"}
        event.update(extra)
        return self.event(event)

    def ping(self) -> None:
        """A WebSocket ping to each connection that said hello (Slack pings its apps)."""
        for socket in self._serving():
            socket.sendPing()

    def send_raw(self, frame: dict | bytes) -> None:
        """A frame outside the envelope bookkeeping (malformed ones, disconnects)."""
        for socket in self._serving():
            socket.send(frame)
