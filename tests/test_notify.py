"""Telling the owner: the gateway event, the outbox row for the target's channel, the journal."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor

from openclaw.notify import Notifier
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
def test_webchat_targets_get_the_event_only_and_nobody_known_still_pushes(store: Any) -> None:
    pushed = Pushes()
    notifier = Notifier(reactor, store, pushed, lambda: None)
    assert (yield notifier.notify("info", "report", "the report", "r:1")) is None
    assert pushed[-1][0] == ""  # subscribers to every session still hear it
    notifier.target = "webchat:me"
    yield notifier.notify("info", "report", "the report", "r:2")
    assert (yield store.due_outbox(float("inf"), 10)) == [] and pushed[-1][0] == "webchat:me"
