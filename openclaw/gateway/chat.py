"""
Webchat over the gateway: ``chat.send``, ``chat.history``, ``sessions.list``
and ``subscribe``, plus the hub that pushes ``chat.reply`` (and later
``alert``/``heartbeat``) events to subscribed connections.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime

from openclaw.events import MESSAGE_RECEIVED, Event, OutboxItem
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError
from openclaw.notify import webchat_alert
from openclaw.pipeline import USAGE_PREFIX, Busy, ShuttingDown, StoreUnavailable

MAX_TEXT = 32_000
MAX_HISTORY = 500
ALL = "*"


class WebchatHub:
    """
    Which connection listens to which session (and since when); delivers
    webchat replies and proactive messages.

    :param clock: the time a subscription starts, to tell a proactive
        message that waited (``while_away``) from one heard live.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock
        self._subscriptions: dict[Any, dict[str, float]] = {}
        self._listeners: dict[str, int] = {}  # session (or ALL) -> connections subscribed to it
        #: Told when a session gains its first listening connection here, and
        #: which sessions lost their last (the webchat fan-out across instances).
        self.on_listen: Callable[[str], Any] = lambda session: None
        self.on_forget: Callable[[list[str]], Any] = lambda sessions: None

    def subscribe(self, conn: Any, session: str) -> None:
        sessions = self._subscriptions.setdefault(conn, {})
        if session in sessions:
            return
        sessions[session] = self._clock.seconds() if self._clock is not None else 0.0
        self._listeners[session] = self._listeners.get(session, 0) + 1
        if self._listeners[session] == 1:
            self.on_listen(session)

    def forget(self, conn: Any) -> None:
        gone = []
        for session in self._subscriptions.pop(conn, {}):
            self._listeners[session] -= 1
            if not self._listeners[session]:
                del self._listeners[session]
                gone.append(session)
        if gone:
            self.on_forget(gone)

    def listening(self) -> list[str]:
        """The sessions (and ``*``) some connection here listens to."""
        return list(self._listeners)

    def push(self, session: str, event: str, payload: dict) -> int:
        """Send an event to every connection subscribed to ``session``; return how many."""
        data = frames.encode_event(event, payload)
        sent = 0
        for conn, sessions in list(self._subscriptions.items()):
            if session in sessions or ALL in sessions:
                conn.send(data)
                sent += 1
        return sent

    def _listening_since(self, session: str) -> list[float]:
        return [since[key] for since in self._subscriptions.values() for key in (session, ALL) if key in since]

    def deliver(self, item: OutboxItem) -> bool:
        """
        The webchat deliverer: pushed to at least one connection counts as
        delivered; with nobody listening the row waits for a subscriber.
        Clients drop repeats by ``reply_to`` (replies) or ``id`` (alerts):
        the at-least-once window.  A proactive row is an ``alert`` event,
        ``while_away`` when every listener subscribed after it was made.
        """
        alert = webchat_alert(item.dedupe_key)
        if alert is None:
            payload = {"session": item.session_id, "text": item.text, "reply_to": item.reply_to}
            return self.push(item.session_id, "chat.reply", payload) > 0
        since = self._listening_since(item.session_id)
        if not since:
            return False
        kind, source = alert
        return self.push(item.session_id, "alert", {
            "kind": kind, "check": source, "message": item.text, "session": item.session_id,
            "id": item.id, "at": item.created_at, "while_away": min(since) > item.created_at,
        }) > 0


def _session(conn: Any, params: dict) -> str:
    session = params.get("session")
    if session is None:
        return conn.session_id
    if not isinstance(session, str) or not session.startswith("webchat:") or len(session) > 128:
        raise FrameError(frames.INVALID_FIELD, "field 'session' must be a webchat:<id> session")
    return session


def _store_unavailable(failure: Any) -> Any:
    failure.trap(StoreUnavailable)
    raise FrameError(frames.STORE_UNAVAILABLE,
                     "the store is failing, so nothing was recorded; send it again shortly") from None


def chat_methods(pipeline: Any, store: Any, hub: WebchatHub, outbox_kick: Callable[[], None]) -> dict[str, Callable]:
    """The webchat methods, for the gateway's method table."""

    def send(conn: Any, params: dict) -> Deferred:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise FrameError(frames.INVALID_FIELD, "field 'text' must be a non-empty string")
        if len(text) > MAX_TEXT:
            raise FrameError(frames.INVALID_FIELD, f"field 'text' is longer than {MAX_TEXT} characters")
        session = _session(conn, params)
        client_msg_id = params.get("client_msg_id")
        if client_msg_id is not None and (not isinstance(client_msg_id, str) or len(client_msg_id) > 128):
            raise FrameError(frames.INVALID_FIELD, "field 'client_msg_id' must be a string of at most 128 characters")
        payload: dict[str, Any] = {"text": text, "sender_id": conn.session_id}
        if client_msg_id:
            payload["platform_message_id"] = f"{session}/{client_msg_id}"
        event = Event(type=MESSAGE_RECEIVED, source="webchat", session_id=session,
                      timestamp=pipeline.runtime.clock.seconds(), payload=payload)
        hub.subscribe(conn, session)
        try:
            d = pipeline.receive(event)
        except Busy:
            raise FrameError(frames.BUSY, "this session has too many messages waiting; try again shortly") from None
        except ShuttingDown:
            raise FrameError(frames.SHUTTING_DOWN, "the daemon is shutting down; reconnect later") from None
        d.addCallbacks(lambda r: {"event_id": r[0], "session": session, "duplicate": r[1]}, _store_unavailable)
        return d

    def history(conn: Any, params: dict) -> Deferred:
        session = _session(conn, params)
        limit = params.get("limit", 50)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_HISTORY:
            raise FrameError(frames.INVALID_FIELD, f"field 'limit' must be a whole number from 1 to {MAX_HISTORY}")
        d = store.history(session, limit)
        d.addCallback(lambda rows: {"messages": [
            {"role": r["role"], "text": r["text"], "event_id": r["event_id"], "timestamp": r["timestamp"]}
            for r in rows
        ]})
        return d

    @inlineCallbacks
    def sessions(conn: Any, params: dict) -> Any:
        rows = yield store.sessions()
        for row in rows:
            row["usage"] = (yield store.get_state(USAGE_PREFIX + row["session_id"])) or {}
        return {"sessions": rows}

    def subscribe(conn: Any, params: dict) -> dict:
        session = params.get("session", ALL)
        if session != ALL:
            session = _session(conn, params)
        hub.subscribe(conn, session)
        outbox_kick()  # replies that waited for a listener go out now
        return {"subscribed": session}

    return {"chat.send": send, "chat.history": history, "sessions.list": sessions, "subscribe": subscribe}
