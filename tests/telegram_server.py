"""
A local Telegram Bot API for the connector tests: a real HTTP server on
127.0.0.1 speaking ``/bot<token>/<method>`` with JSON bodies.

``getUpdates`` long-polls (held until an update is queued or ``timeout``
passes) with Telegram's offset semantics: a call with ``offset`` confirms,
and forgets, every update below it.  ``sendMessage`` records texts and
refuses ones over 4,096 UTF-16 units as Telegram does.  Failures are
scripted per method (``script``), or global: ``reject`` (every call gets
that status), ``stall`` (accept and never answer); ``restart`` drops every
connection and listens again on the same port.  ``close_after_response``
answers as an HTTP/1.0 server (or one behind a proxy) does: an ``HTTP/1.0``
status line with no keep-alive, and one request per connection.  The close
comes a moment after the response (``CLOSE_DELAY``, as through a proxy); a
request sent on the connection meanwhile is never answered, the connection
dropped: what a client reusing a pooled connection runs into.

Pollers: every ``getUpdates`` is recorded in ``polls`` (the client's
address, when it came and when it ended, how).  The Bot API has no poller
identity, so neither does this: two bots' worth of pollers show as two
long polls in flight at once.  Like Telegram, a new ``getUpdates`` while
another is held ends the held one with 409 Conflict ("terminated by other
getUpdates request"); ``max_pollers`` is the most held at once plus the
new one (1 while only one client polls) and ``poll_gaps`` the stretches
with no poll in flight.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from openclaw.connectors.split import utf16_length
from tests.waiting import until  # noqa: F401 (the tests import it from here)

TOKEN = "123456:TEST-token-SECRET"
CLOSE_DELAY = 0.2
USERNAME = "openclaw_test_bot"


def error(status: int, description: str, retry_after: float | None = None) -> tuple[int, bytes]:
    """An error answer as the Bot API spells it."""
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return status, json.dumps(body).encode()


def ok(result: Any) -> tuple[int, bytes]:
    return 200, json.dumps({"ok": True, "result": result}).encode()


def text_update(chat_id: int, text: str, sender_id: int | None = None, first_name: str = "Ann") -> dict:
    """The ``message`` of an update (the server adds ``update_id`` and ``message_id``)."""
    sender_id = chat_id if sender_id is None else sender_id
    return {"message": {
        "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
        "from": {"id": sender_id, "is_bot": False, "first_name": first_name, "username": f"user{sender_id}"},
        "date": 1700000000, "text": text,
    }}


CONFLICT = error(409, "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running")


@dataclass
class Poll:
    """One ``getUpdates``: ``outcome`` is answered, conflict (ended by a newer one) or dropped (the client went)."""

    peer: str
    start: float
    end: float | None = None
    outcome: str = ""


def one_request_per_connection(request: Any) -> bool:
    """
    Serve ``request`` HTTP/1.0-style and close its connection ``CLOSE_DELAY``
    after the response; :return: False (the connection dropped, nothing to
    answer) for a second request on a connection already answered.
    """
    channel = request.channel
    if getattr(channel, "answered", False):
        channel.transport.abortConnection()
        return False
    channel.answered = True
    request.clientproto = b"HTTP/1.0"
    request.notifyFinish().addBoth(lambda _: reactor.callLater(CLOSE_DELAY, channel.transport.loseConnection))
    return True


class BotAPI(Resource):
    isLeaf = True

    def __init__(self, token: str = TOKEN, username: str = USERNAME) -> None:
        super().__init__()
        self.token = token
        self.username = username
        self.queue: list[dict] = []
        self.next_update = 1000
        self.next_message = 1
        self.calls: Counter[str] = Counter()
        self.offsets: list[int | None] = []
        self.sent: list[dict] = []
        self.script: dict[str, list[tuple[int, bytes] | None]] = {}
        self.reject: int | None = None
        self.stall = False
        self.close_after_response = False
        self.dropped = 0
        self._polls: list[tuple[Any, Any]] = []
        self.polls: list[Poll] = []
        self.max_pollers = 0
        site = Site(self)
        site.noisy = False
        self._factory = WrappingFactory(site)  # tracks connections, so a restart can drop them
        self._port: Any = None
        self.port_number = 0

    # Running

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_number}"

    def start(self) -> BotAPI:
        self._port = reactor.listenTCP(self.port_number, self._factory, interface="127.0.0.1")
        self.port_number = self._port.getHost().port
        return self

    @inlineCallbacks
    def stop(self) -> Any:
        """Stop listening and drop every connection (held polls included)."""
        port, self._port = self._port, None
        if port is not None:
            yield port.stopListening()
        for connection in list(self._factory.protocols):
            connection.transport.abortConnection()

    @inlineCallbacks
    def restart(self) -> Any:
        yield self.stop()
        self.start()

    # Scripting

    def push(self, update: dict) -> int:
        """Queue an update (``update_id`` and ``message_id`` filled in); :return: its ``update_id``."""
        update = {**update, "update_id": self.next_update}
        message = update.get("message")
        if isinstance(message, dict) and "message_id" not in message:
            update["message"] = {**message, "message_id": self.next_message}
            self.next_message += 1
        self.next_update += 1
        self.queue.append(update)
        self._answer_polls()
        return update["update_id"]

    def fail_next(self, method: str, *answers: tuple[int, bytes] | None) -> None:
        """The next calls of ``method`` get these answers, in order (``None``: the normal answer)."""
        self.script.setdefault(method, []).extend(answers)

    def poll_gaps(self, since: float = 0.0, upto: float | None = None) -> list[tuple[float, float]]:
        """The stretches (from, to) within ``since``..``upto`` (default: now) with no ``getUpdates`` in flight."""
        now = reactor.seconds()
        upto = now if upto is None else upto
        gaps, covered = [], since
        for poll in sorted(self.polls, key=lambda p: p.start):
            end = now if poll.end is None else poll.end
            if end < since or poll.start >= upto:
                continue
            if poll.start > covered:
                gaps.append((covered, poll.start))
            covered = max(covered, end)
        if upto > covered:
            gaps.append((covered, upto))
        return gaps

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [m["text"] for m in self.sent if chat_id is None or m["chat_id"] == chat_id]

    # Serving

    def render_POST(self, request: Any) -> Any:
        if self.close_after_response and not one_request_per_connection(request):
            self.dropped += 1
            return NOT_DONE_YET
        parts = request.path.decode().split("/")
        method = parts[-1]
        self.calls[method] += 1
        if self.stall:
            return NOT_DONE_YET
        if len(parts) != 3 or parts[1] != f"bot{self.token}":
            return self._send(request, *error(401, "Unauthorized"))
        if self.reject is not None:
            return self._send(request, *error(self.reject, "Unauthorized" if self.reject == 401 else "Not Found"))
        answer = self.script[method].pop(0) if self.script.get(method) else None
        if answer is not None:
            return self._send(request, *answer)
        try:
            params = json.loads(request.content.read() or b"{}")
        except ValueError:
            return self._send(request, *error(400, "Bad Request: invalid JSON"))
        handler: Callable[[Any, dict], Any] | None = getattr(self, f"_{method}", None)
        if handler is None:
            return self._send(request, *error(404, "Not Found"))
        return handler(request, params)

    def _send(self, request: Any, status: int, body: bytes) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return body

    def _getMe(self, request: Any, params: dict) -> bytes:
        return self._send(request, *ok({"id": 123456, "is_bot": True, "first_name": "openclaw",
                                        "username": self.username}))

    def _getUpdates(self, request: Any, params: dict) -> Any:
        peer = request.getClientAddress()
        poll = Poll(f"{peer.host}:{peer.port}", reactor.seconds())
        self.polls.append(poll)
        request.poll = poll
        self.max_pollers = max(self.max_pollers, len(self._polls) + 1)
        for held, _ in list(self._polls):
            self._answer_poll(held, CONFLICT, "conflict")
        offset = params.get("offset")
        self.offsets.append(offset)
        if isinstance(offset, int):
            self.queue = [u for u in self.queue if u["update_id"] >= offset]
        if self.queue or not params.get("timeout"):
            poll.end, poll.outcome = poll.start, "answered"
            return self._send(request, *ok(self.queue[:100]))
        timer = reactor.callLater(params["timeout"], self._answer_poll, request)
        self._polls.append((request, timer))
        request.notifyFinish().addErrback(lambda _: self._forget_poll(request, "dropped"))
        return NOT_DONE_YET

    def _answer_polls(self) -> None:
        for request, _ in list(self._polls):
            self._answer_poll(request)

    def _answer_poll(self, request: Any, answer: tuple[int, bytes] | None = None, outcome: str = "answered") -> None:
        self._forget_poll(request, outcome)
        request.write(self._send(request, *(answer or ok(self.queue[:100]))))
        request.finish()

    def _forget_poll(self, request: Any, outcome: str) -> None:
        if request.poll.end is None:
            request.poll.end, request.poll.outcome = reactor.seconds(), outcome
        for entry in [p for p in self._polls if p[0] is request]:
            self._polls.remove(entry)
            if entry[1].active():
                entry[1].cancel()

    def _sendMessage(self, request: Any, params: dict) -> bytes:
        text, chat_id = params.get("text"), params.get("chat_id")
        if not isinstance(text, str) or not text.strip():
            return self._send(request, *error(400, "Bad Request: message text is empty"))
        if chat_id is None:
            return self._send(request, *error(400, "Bad Request: chat not found"))
        if utf16_length(text) > 4096:
            return self._send(request, *error(400, "Bad Request: message is too long"))
        self.sent.append({"chat_id": chat_id, "text": text})
        self.next_message += 1
        return self._send(request, *ok({"message_id": self.next_message, "date": 1700000000,
                                        "chat": {"id": chat_id}, "text": text}))

