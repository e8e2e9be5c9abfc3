"""
A local Discord for tests: the Gateway v10 (JSON over WebSocket, Autobahn)
on two ports (the first connection's and READY's ``resume_gateway_url``) and
REST (twisted.web) on a third, all on 127.0.0.1 port 0.

It keeps one bot session: IDENTIFY starts it, RESUME continues it and
replays the events sent while nobody was connected, as Discord does.  Posted
messages are recorded, echoed to the gateway as the bot's own MESSAGE_CREATE,
deduplicated by ``enforce_nonce``, refused beyond 2,000 characters, and rate
limited on request (the first N posts, or a bucket of N per window on
``clock``).  Knobs: ``hello`` (False: accept and say nothing), ``ack``
(False: never acknowledge heartbeats), ``heartbeat_interval``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor
from twisted.web import resource, server

from tests.waiting import until  # noqa: F401 (the tests import it from here)

BOT_ID = "900"
TOKEN = "test-token"
_MESSAGES = re.compile(r"^/api/v10/channels/(\d+)/messages$")




class _Gateway(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.factory.discord.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.discord.received(self, orjson.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.discord.gone(self)


class _Rest(resource.Resource):
    isLeaf = True

    def __init__(self, discord: "DiscordServer") -> None:
        super().__init__()
        self.discord = discord

    def render_POST(self, request: Any) -> bytes:
        status, headers, body = self.discord.post(
            request.path.decode(), (request.getHeader("authorization") or ""), request.content.read())
        request.setResponseCode(status)
        request.setHeader("content-type", "application/json")
        for name, value in headers.items():
            request.setHeader(name, value)
        return orjson.dumps(body)


class DiscordServer:
    """``start()`` then point a connector at ``gateway_url`` and ``api_url``; ``stop()`` at the end."""

    def __init__(self, clock: Any = reactor, token: str = TOKEN, heartbeat_interval: float = 0.2) -> None:
        self.clock = clock
        self.token = token
        self.rest_token = token
        self.heartbeat_interval = heartbeat_interval
        self.hello = True
        self.ack = True
        self.connections = 0
        self.identifies: list[tuple[str, dict]] = []
        self.resumes: list[tuple[str, dict]] = []
        self.heartbeats: list[Any] = []
        self.session: dict[str, Any] | None = None
        self.live: _Gateway | None = None
        self.posted: list[dict[str, Any]] = []
        self.rest_requests = 0
        self.rate_limit_first = 0
        self.retry_after = 0.05
        self.bucket_limit: int | None = None
        self.bucket_window = 1.0
        self.bucket_violations = 0
        self._window: tuple[float, int] = (-math.inf, 0)
        self._nonces: dict[str, dict] = {}
        self._ids = 1000
        self._sessions = 0
        self._protocols: set[_Gateway] = set()
        self._ports: dict[str, Any] = {}
        self._numbers: dict[str, int] = {}

    # Lifecycle

    def start(self) -> "DiscordServer":
        for kind in ("gateway", "resume"):
            self._listen(kind, 0)
        self._ports["rest"] = reactor.listenTCP(0, server.Site(_Rest(self)), interface="127.0.0.1")
        self._numbers["rest"] = self._ports["rest"].getHost().port
        return self

    def _listen(self, kind: str, number: int) -> None:
        factory = WebSocketServerFactory()
        factory.protocol = _Gateway
        factory.discord = self
        factory.kind = kind
        self._ports[kind] = reactor.listenTCP(number, factory, interface="127.0.0.1")
        self._numbers[kind] = self._ports[kind].getHost().port

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._numbers['gateway']}/?v=10&encoding=json"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._numbers['rest']}/api/v10"

    def _drop_all(self) -> None:
        for protocol in list(self._protocols):
            protocol.transport.abortConnection()
        self.live = None

    @defer.inlineCallbacks
    def restart(self) -> Any:
        """The gateway process dies and comes back on the same ports; sessions survive (Discord's do)."""
        self._drop_all()
        for kind in ("gateway", "resume"):
            yield self._ports[kind].stopListening()
        for kind in ("gateway", "resume"):
            self._listen(kind, self._numbers[kind])

    @defer.inlineCallbacks
    def stop(self) -> Any:
        self._drop_all()
        for port in self._ports.values():
            yield port.stopListening()

    # Gateway

    def _send(self, protocol: _Gateway, message: dict[str, Any]) -> None:
        if protocol.state == WebSocketServerProtocol.STATE_OPEN:
            protocol.sendMessage(orjson.dumps(message))

    def opened(self, protocol: _Gateway) -> None:
        self.connections += 1
        self._protocols.add(protocol)
        if self.hello:
            self._send(protocol, {"op": 10, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}})

    def gone(self, protocol: _Gateway) -> None:
        self._protocols.discard(protocol)
        if self.live is protocol:
            self.live = None

    def received(self, protocol: _Gateway, message: dict[str, Any]) -> None:
        op, d = message["op"], message.get("d")
        kind = protocol.factory.kind
        if op == 1:
            self.heartbeats.append(d)
            if self.ack:
                self._send(protocol, {"op": 11})
        elif op == 2:
            self.identifies.append((kind, d))
            if d.get("token") != self.token:
                protocol.sendClose(4004, "Authentication failed.")
                return
            self._sessions += 1
            self.session = {"id": f"session-{self._sessions}", "seq": 0, "events": []}
            self.live = protocol
            self.dispatch("READY", {
                "v": 10, "user": {"id": BOT_ID, "username": "openclaw", "bot": True}, "guilds": [],
                "session_id": self.session["id"],
                "resume_gateway_url": f"ws://127.0.0.1:{self._numbers['resume']}",
            })
        elif op == 6:
            self.resumes.append((kind, d))
            if d.get("token") != self.token:
                protocol.sendClose(4004, "Authentication failed.")
            elif self.session is None or d.get("session_id") != self.session["id"]:
                self._send(protocol, {"op": 9, "d": False})
            else:
                self.live = protocol
                for seq, t, data in self.session["events"]:
                    if seq > (d.get("seq") or 0):
                        self._send(protocol, {"op": 0, "s": seq, "t": t, "d": data})
                self.dispatch("RESUMED", {})
        else:
            protocol.sendClose(4001, "Unknown opcode.")

    def dispatch(self, t: str, d: Any) -> int:
        """Add an event to the session and send it if the bot is connected; :return: its seq."""
        assert self.session is not None, "no session: the bot never identified"
        self.session["seq"] += 1
        seq = self.session["seq"]
        self.session["events"].append((seq, t, d))
        if self.live is not None:
            self._send(self.live, {"op": 0, "s": seq, "t": t, "d": d})
        return seq

    def send_raw(self, data: bytes, binary: bool = False) -> None:
        """A frame as is to the connected bot (malformed on purpose)."""
        assert self.live is not None
        self.live.sendMessage(data, isBinary=binary)

    def close_live(self, code: int) -> None:
        assert self.live is not None
        self.live.sendClose(code, "closed by the test")

    def forget_session(self) -> None:
        """The session expires server-side: a RESUME now gets INVALID_SESSION."""
        self.session = None

    def _next_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    def message(
        self, channel_id: str, content: Any, author_id: str = "42", guild_id: str | None = None,
        mentions: tuple[str, ...] = (), bot: bool = False, drop: tuple[str, ...] = (),
    ) -> str:
        """Someone writes in ``channel_id``; ``drop`` leaves fields out.  :return: the message id."""
        message_id = self._next_id()
        data: dict[str, Any] = {
            "id": message_id, "channel_id": channel_id, "type": 0, "content": content,
            "author": {"id": author_id, "username": f"user{author_id}", "bot": bot},
            "mentions": [{"id": m, "username": "openclaw"} for m in mentions],
        }
        if guild_id is not None:
            data["guild_id"] = guild_id
        for key in drop:
            data.pop(key, None)
        self.dispatch("MESSAGE_CREATE", data)
        return message_id

    # REST

    def post(self, path: str, authorization: str, raw: bytes) -> tuple[int, dict[str, str], Any]:
        self.rest_requests += 1
        match = _MESSAGES.match(path)
        if match is None:
            return 404, {}, {"message": "404: Not Found", "code": 0}
        if authorization != f"Bot {self.rest_token}":
            return 401, {}, {"message": "401: Unauthorized", "code": 0}
        if self.rate_limit_first > 0:
            self.rate_limit_first -= 1
            return 429, {"retry-after": str(math.ceil(self.retry_after)), "x-ratelimit-scope": "user"}, {
                "message": "You are being rate limited.", "retry_after": self.retry_after, "global": False}
        headers = self._bucket()
        if headers is None:
            self.bucket_violations += 1
            wait = self._window[0] + self.bucket_window - self.clock.seconds()
            return 429, {"x-ratelimit-bucket": "messages", "x-ratelimit-remaining": "0"}, {
                "message": "You are being rate limited.", "retry_after": round(wait, 3), "global": False}
        body = orjson.loads(raw)
        content = body.get("content", "")
        if len(content) > 2000:
            return 400, headers, {"message": "Invalid Form Body", "code": 50035}
        nonce = body.get("nonce")
        if body.get("enforce_nonce") and nonce in self._nonces:
            return 200, headers, self._nonces[nonce]
        created = {"id": self._next_id(), "channel_id": match.group(1), "content": content, "type": 0,
                   "author": {"id": BOT_ID, "username": "openclaw", "bot": True}, "mentions": []}
        self.posted.append({"channel_id": match.group(1), "content": content, "nonce": nonce})
        if nonce is not None:
            self._nonces[nonce] = created
        if self.session is not None:
            self.dispatch("MESSAGE_CREATE", created)
        return 200, headers, created

    def _bucket(self) -> dict[str, str] | None:
        """The rate-limit headers of an allowed post, or ``None`` when the bucket is empty."""
        if self.bucket_limit is None:
            return {"x-ratelimit-bucket": "messages", "x-ratelimit-limit": "5",
                    "x-ratelimit-remaining": "4", "x-ratelimit-reset-after": "1.000"}
        now = self.clock.seconds()
        start, used = self._window
        if now >= start + self.bucket_window:
            start, used = now, 0
        if used >= self.bucket_limit:
            return None
        self._window = (start, used + 1)
        reset_after = math.ceil((start + self.bucket_window - now) * 1000) / 1000
        return {"x-ratelimit-bucket": "messages", "x-ratelimit-limit": str(self.bucket_limit),
                "x-ratelimit-remaining": str(self.bucket_limit - used - 1),
                "x-ratelimit-reset-after": f"{reset_after:.3f}"}

    def replies(self, channel_id: str) -> list[str]:
        return [p["content"] for p in self.posted if p["channel_id"] == channel_id]
