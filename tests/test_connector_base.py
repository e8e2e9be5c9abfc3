"""The connector loop on a deterministic clock: backoff, reset, stall watchdog, terminal errors."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from openclaw import metrics
from openclaw.connectors.base import (
    BACKOFF,
    CONNECTED,
    FAILED,
    STOPPED,
    ConnectorService,
    NotConnected,
    Terminal,
)
from openclaw.config.connectors import ConnectorsConfig, TelegramConfig
from openclaw.connectors.service import CLASSES, make_connectors
from openclaw.events import OutboxItem
from openclaw.interfaces import IConnector


class Scripted(ConnectorService):
    """Each ``run_once`` hands the test a Deferred to end as it likes."""

    def __init__(self, clock: Clock, config: Any, notifier: Any = None) -> None:
        super().__init__("scripted", clock, config, pipeline=None, store=None, notifier=notifier, rng=lambda: 1.0)
        self.connections: list[Deferred] = []
        self.cancelled = 0

    def run_once(self) -> Deferred:
        def cancel(d: Deferred) -> None:
            self.cancelled += 1

        d = Deferred(cancel)
        self.connections.append(d)
        return d

    def send_text(self, chat_id: str, text: str, dedupe_key: str) -> Deferred:
        return succeed(None)


class Notes:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def notify(self, kind: str, source: str, message: str, dedupe_key: str, target: str = "",
               avoid: str = "") -> Deferred:
        self.calls.append((kind, source, message, avoid))
        return succeed(None)


def reconnects(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "openclaw_connector_reconnects_total", {"connector": "scripted", "reason": reason}) or 0.0


def make(**overrides: Any) -> tuple[Clock, Scripted]:
    clock = Clock()
    config = TelegramConfig(**{"stall_timeout": 30.0, "backoff_max": 16.0, "stable_after": 60.0, **overrides})
    return clock, Scripted(clock, config)


def test_failed_connections_back_off_exponentially_up_to_the_cap() -> None:
    clock, c = make()
    c.startService()
    delays = []
    for _ in range(7):
        c.connections[-1].errback(ConnectionError("refused"))
        assert c.state == BACKOFF
        pending = [call.getTime() - clock.seconds() for call in clock.getDelayedCalls() if call.func == c._connect]
        delays.append(pending[0])
        clock.advance(pending[0])
    # jitter 1.0 gives the full step: 1, 2, 4, 8, 16 then the cap.
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    assert len(c.connections) == 8 and c.reconnects == 7
    c.stopService()


def test_a_stable_connection_resets_the_backoff() -> None:
    clock, c = make(stall_timeout=0)  # 0: no watchdog
    c.startService()
    for _ in range(3):
        c.connections[-1].errback(ConnectionError("refused"))
        clock.advance(16)
    c.up()
    assert c.state == CONNECTED and c.is_connected()
    clock.advance(61)
    c.connections[-1].callback(None)
    assert [call.getTime() - clock.seconds() for call in clock.getDelayedCalls() if call.func == c._connect] == [1.0]
    c.stopService()


def test_a_silent_connection_is_torn_down_by_the_watchdog_and_counted() -> None:
    clock, c = make(stall_timeout=30.0)
    before = reconnects("stall")
    c.startService()
    c.up()
    for _ in range(5):
        clock.advance(20)
        c.poke()  # data keeps arriving: no stall
    assert c.cancelled == 0
    clock.advance(30)
    assert c.cancelled == 1 and c.state == BACKOFF
    assert reconnects("stall") == before + 1
    assert "no data for 30s" in c.health()["last_error"]
    clock.advance(1)
    assert len(c.connections) == 2
    c.stopService()


def test_a_terminal_error_stops_retrying_and_alerts_once() -> None:
    clock = Clock()
    notes = Notes()
    c = Scripted(clock, TelegramConfig(stall_timeout=30.0), notifier=notes)
    c.startService()
    c.connections[-1].errback(Terminal("token revoked (401)"))
    clock.advance(3600)
    assert len(c.connections) == 1 and c.state == FAILED
    assert c.health() == {"connected": False, "state": "failed", "last_receive": None,
                          "last_error": "token revoked (401)", "reconnects": 0}
    assert [(k, s, avoid) for k, s, _, avoid in notes.calls] == [("alert", "scripted", "scripted")]
    try:
        c.deliver(OutboxItem(session_id="scripted:1", channel="scripted", text="hi", dedupe_key="k"))
    except NotConnected as e:
        assert "token revoked" in str(e)
    else:
        raise AssertionError("a failed connector must refuse sends so the outbox retries")
    c.stopService()
    assert c.state == FAILED


def test_stopping_cancels_the_connection_and_schedules_nothing() -> None:
    clock, c = make()
    c.startService()
    c.up()
    c.stopService()
    assert c.cancelled == 1 and c.state == STOPPED
    assert clock.getDelayedCalls() == []
    assert metrics.REGISTRY.get_sample_value("openclaw_connector_up", {"connector": "scripted"}) == 0.0


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_platform_provides_the_connector_interface(name: str) -> None:
    config = ConnectorsConfig()
    [connector] = make_connectors(replace(config, **{name: replace(getattr(config, name), enabled=True)}),
                                  Clock(), pipeline=None, store=None, notifier=None, environ={})
    assert connector.name == name and verifyObject(IConnector, connector)
    assert connector.health()["state"] == "starting"


def test_credentials_refused_on_a_send_end_the_connection_for_good() -> None:
    clock = Clock()
    notes = Notes()
    c = Scripted(clock, TelegramConfig(stall_timeout=30.0), notifier=notes)
    c.startService()
    c.up()
    c.credentials_refused("sendMessage: 401 Unauthorized")
    clock.advance(3600)
    assert c.state == FAILED and len(c.connections) == 1 and c.cancelled == 1
    assert c.health()["last_error"] == "sendMessage: 401 Unauthorized" and len(notes.calls) == 1
    c.stopService()
