"""Telling the owner: the gateway event, the outbox row for the target's channel, the journal."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor

import orjson
import pytest
from hypothesis import given, strategies as st
from twisted.internet.task import Clock

from openclaw.events import OutboxItem
from openclaw.gateway.chat import WebchatHub
from openclaw.gateway.frames import FrameError
from openclaw.notify import KINDS, Notifier, alerts_method, webchat_alert, webchat_key
from tests.store_contract import message


class Pushes(list):
    def __call__(self, session: str, event: str, payload: dict) -> int:
        self.append((session, event, payload))
        return 1


@pytest_twisted.inlineCallbacks
def test_the_last_active_session_is_told_on_every_path(store: Any) -> None:
    yield store.record_inbound(message(session="slack:C1", source="slack", timestamp=100.0))
    yield store.record_inbound(message(session="telegram:7", source="telegram", timestamp=200.0))
    pushed, kicks = Pushes(), []
    notifier = Notifier(reactor, store, pushed, lambda: kicks.append(1))
    told = yield notifier.notify("alert", "web", "web is DOWN", "check:web:1:alert")
    again = yield notifier.notify("alert", "web", "web is DOWN", "check:web:1:alert")
    assert told == again == "telegram:7"
    due = yield store.due_outbox(float("inf"), 10)
    assert [(i.session_id, i.channel, i.text) for i in due] == [("telegram:7", "telegram", "web is DOWN")]
    assert pushed[0] == ("telegram:7", "alert", {"kind": "alert", "check": "web", "message": "web is DOWN",
                                                 "session": "telegram:7"})
    assert len((yield store.journal("alert", 0.0))) == 2 and kicks


@pytest_twisted.inlineCallbacks
def test_a_failed_connector_is_not_told_about_itself(store: Any) -> None:
    yield store.record_inbound(message(session="slack:C1", source="slack", timestamp=100.0))
    yield store.record_inbound(message(session="telegram:7", source="telegram", timestamp=200.0))
    for target in ("last", "telegram:7"):
        notifier = Notifier(reactor, store, Pushes(), lambda: None, target=target)
        told = yield notifier.notify("alert", "telegram", "telegram stopped", f"t:{target}", avoid="telegram")
        assert told == "slack:C1"


@pytest_twisted.inlineCallbacks
def test_nobody_known_still_pushes_to_every_session_watchers(store: Any) -> None:
    pushed = Pushes()
    notifier = Notifier(reactor, store, pushed, lambda: None)
    assert (yield notifier.notify("info", "report", "the report", "r:1")) is None
    assert pushed[-1][0] == ""  # subscribers to every session still hear it
    assert (yield store.due_outbox(float("inf"), 10)) == []


class Conn(list):
    """A gateway connection that keeps the events it was sent."""

    __hash__ = object.__hash__

    def send(self, data: bytes) -> None:
        self.append(orjson.loads(data))


@pytest_twisted.inlineCallbacks
def test_a_webchat_alert_waits_in_the_outbox_and_history_until_someone_subscribes(store: Any) -> None:
    clock, pushed = Clock(), Pushes()
    hub = WebchatHub(clock)
    notifier = Notifier(clock, store, pushed, lambda: None, target="webchat:me")
    clock.advance(100)
    yield notifier.notify("alert", "check:web", "web is DOWN", "check:web:1:alert")
    clock.advance(5)
    yield notifier.notify("recovery", "check:web", "web is back up", "check:web:1:recovery")
    assert pushed == []  # a webchat target hears it only through the outbox
    history = yield store.history("webchat:me", 10)
    assert [(m["role"], m["text"]) for m in history] == [("assistant", "web is DOWN"), ("assistant", "web is back up")]
    due = yield store.due_outbox(float("inf"), 10)
    assert [hub.deliver(i) for i in due] == [False, False]  # nobody listens: the rows stay pending
    clock.advance(60)
    live, other = Conn(), Conn()
    hub.subscribe(live, "webchat:me")
    hub.subscribe(other, "webchat:someone-else")
    assert [hub.deliver(i) for i in due] == [True, True] and other == []
    assert [(f["event"], f["payload"]["kind"], f["payload"]["check"], f["payload"]["message"],
             f["payload"]["while_away"], f["payload"]["at"]) for f in live] == [
        ("alert", "alert", "check:web", "web is DOWN", True, 100.0),
        ("alert", "recovery", "check:web", "web is back up", True, 105.0)]
    # Heard live: a listener subscribed before the alert was made.
    yield notifier.notify("alert", "check:web", "web is DOWN again", "check:web:2:alert")
    (late,) = [i for i in (yield store.due_outbox(float("inf"), 10)) if i.text == "web is DOWN again"]
    assert hub.deliver(late) and live[-1]["payload"]["while_away"] is False


def test_replies_and_unknown_keys_stay_chat_replies() -> None:
    hub, conn = WebchatHub(Clock()), Conn()
    hub.subscribe(conn, "*")
    reply = OutboxItem(session_id="webchat:me", channel="webchat", text="hi", dedupe_key="reply:e1:0", reply_to="e1")
    odd = OutboxItem(session_id="webchat:me", channel="webchat", text="x", dedupe_key="notify:bogus:a:b")
    assert hub.deliver(reply) and hub.deliver(odd)
    assert [f["event"] for f in conn] == ["chat.reply", "chat.reply"]


@given(st.sampled_from(KINDS), st.text(), st.text())
def test_the_webchat_key_carries_kind_and_source(kind: str, source: str, key: str) -> None:
    assert webchat_alert(webchat_key(kind, source, key)) == (kind, source)


@pytest_twisted.inlineCallbacks
def test_alerts_list_reads_the_journal_since_and_checks_its_field(store: Any) -> None:
    clock = Clock()
    clock.advance(10_000)
    notifier = Notifier(clock, store, Pushes(), lambda: None, target="telegram:7")
    yield notifier.notify("alert", "web", "web is DOWN", "a")
    clock.advance(3600)
    yield notifier.notify("recovery", "web", "web is back up", "b")
    yield notifier.notify("info", "report", "the report", "c")
    list_alerts = alerts_method(clock, store)
    recent = yield list_alerts(None, {"since": 60})
    assert [(a["kind"], a["check"], a["message"], a["session"]) for a in recent["alerts"]] == [
        ("recovery", "web", "web is back up", "telegram:7")]
    assert [a["kind"] for a in (yield list_alerts(None, {}))["alerts"]] == ["alert", "recovery"]
    assert [a["kind"] for a in (yield list_alerts(None, {"all": True}))["alerts"]] == ["alert", "recovery", "info"]
    for bad in (0, -1, "1d", True, 10**9):
        with pytest.raises(FrameError, match="'since'"):
            list_alerts(None, {"since": bad})
