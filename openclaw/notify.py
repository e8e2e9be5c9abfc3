"""
Telling the owner something nobody asked about: alerts and recoveries from
checks, a connector that failed for good, cron messages, reports, important
mail.

One call does three things: queues the text in the outbox for the target
session's channel (durable, retried), pushes an ``alert`` event to gateway
clients watching that session (or all), and appends an ``alert`` record to
the store's journal (the morning report, ``openclaw alerts``).

A webchat target is told only through the outbox: the row and a history
entry are written together, and the hub pushes the ``alert`` when a client
listens, at once or on its next ``subscribe`` (``while_away``), in order
with the session's replies.  Nothing is lost because nobody was listening.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote, unquote

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from zope.interface import implementer

from openclaw import metrics
from openclaw.eliotutil import log, message_type, typed
from openclaw.events import OutboxItem
from openclaw.interfaces import IReconfigurable

KINDS = ("alert", "recovery", "info")

NOTIFY = message_type("openclaw:notify", [
    typed("kind", [str], "alert, recovery or info"), typed("source", [str], "who raised it: heartbeat, a check, cron..."),
    typed("session", [str, None], "the owner's session it went to"), typed("length", [int], "characters of the text"),
], "the owner was told something (warn for alerts)")


def webchat_key(kind: str, source: str, dedupe_key: str) -> str:
    """
    The outbox key of a proactive webchat row: it carries the kind and the
    (quoted) source to the hub, which rebuilds the ``alert`` event from it.
    """
    return f"notify:{kind}:{quote(source, safe='')}:{dedupe_key}"


def webchat_alert(dedupe_key: str) -> tuple[str, str] | None:
    """``(kind, source)`` of a proactive webchat row; ``None`` for a reply."""
    parts = dedupe_key.split(":", 3)
    if len(parts) != 4 or parts[0] != "notify" or parts[1] not in KINDS:
        return None
    return parts[1], unquote(parts[2])


@implementer(IReconfigurable)
class Notifier(Service):
    """
    A service only so that a reload reaches it (``heartbeat.target``); it
    does nothing when started or stopped.

    :param target: ``last`` (the session the owner spoke in last) or a
        session id such as ``telegram:12345``.
    :param push: ``WebchatHub.push``: ``(session, event, payload) -> int``.
    :param kick: wake the outbox after queueing.
    """

    def __init__(
        self, clock: Any, store: Any, push: Callable[[str, str, dict], int],
        kick: Callable[[], Any], target: str = "last",
    ) -> None:
        self.clock = clock
        self.store = store
        self.push = push
        self.kick = kick
        self.target = target

    def reconfigure(self, config: Any) -> None:
        self.target = config.heartbeat.target

    @inlineCallbacks
    def resolve(self, target: str = "", avoid: str = "") -> Any:
        """
        The session to tell: ``target``, else the configured one; ``last`` is
        the most recently active session the store knows (``None`` if none).
        A target on the ``avoid`` channel (a connector that just failed)
        gives way to the last session on another channel.
        """
        target = target or self.target
        if target != "last" and not (avoid and target.startswith(avoid + ":")):
            return target
        sessions = [s for s in (yield self.store.sessions()) if not (avoid and s["channel"] == avoid)]
        if not sessions:
            return None
        return max(sessions, key=lambda s: s["last_active"])["session_id"]

    @inlineCallbacks
    def notify(
        self, kind: str, source: str, message: str, dedupe_key: str, target: str = "", avoid: str = "",
    ) -> Any:
        """
        Tell the owner ``message`` (``kind``: alert, recovery or info) about
        ``source`` (a check, connector, job or mailbox name).  ``dedupe_key``
        makes the outbox row idempotent, so a restart between deciding and
        recording never sends one finding twice.  ``avoid``: a channel that
        cannot deliver (see ``resolve``).

        :return: a Deferred firing with the session told (or ``None``).
        """
        session = yield self.resolve(target, avoid)
        payload = {"kind": kind, "check": source, "message": message, "session": session}
        now = self.clock.seconds()
        if session is not None and session.startswith("webchat:"):
            item = OutboxItem(session_id=session, channel="webchat", text=message,
                              dedupe_key=webchat_key(kind, source, dedupe_key), created_at=now, next_attempt=now)
            yield self.store.enqueue_outbox(item, remember=True)
            self.kick()
        else:
            self.push(session or "", "alert", payload)
            if session is not None:
                item = OutboxItem(session_id=session, channel=session.split(":", 1)[0], text=message,
                                  dedupe_key=f"notify:{dedupe_key}", created_at=now, next_attempt=now)
                yield self.store.enqueue_outbox(item)
                self.kick()
        yield self.store.append_journal("alert", self.clock.seconds(), payload)
        metrics.alerts_total.labels(source, kind).inc()
        log(NOTIFY, level="warn" if kind == "alert" else "info",
            kind=kind, source=source, session=session, length=len(message))
        return session



#: The longest ``alerts.list`` look back (the journal is pruned after ``store.retention`` anyway).
MAX_SINCE = 366 * 86400.0


def alerts_method(clock: Any, store: Any) -> Callable[[Any, dict], Any]:
    """
    ``alerts.list``: params ``{since?}`` (seconds back, default a day; ``all``:
    include ``info``) -> ``{alerts: [{timestamp, kind, check, message, session}]}``,
    oldest first, from the journal.
    """
    from openclaw.gateway import frames
    from openclaw.gateway.frames import FrameError

    def list_alerts(conn: Any, params: dict) -> Any:
        since = params.get("since", 86400.0)
        if isinstance(since, bool) or not isinstance(since, (int, float)) or not 0 < since <= MAX_SINCE:
            raise FrameError(frames.INVALID_FIELD, f"field 'since' must be seconds from 1 to {MAX_SINCE:.0f}")
        everything = params.get("all", False) is True
        d = store.journal("alert", clock.seconds() - since)
        d.addCallback(lambda rows: {"alerts": [
            {"timestamp": r["timestamp"], **{k: r["payload"].get(k) for k in ("kind", "check", "message", "session")}}
            for r in rows if everything or r["payload"].get("kind") in ("alert", "recovery")]})
        return d

    return list_alerts
