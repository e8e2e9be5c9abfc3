"""The ordered drain of the whole tree, over real sockets."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError

from openclaw import metrics
from tests import wsclient
from tests.daemon import RunningDaemon, daemon_config


def gateway_drain_entered(daemon: RunningDaemon) -> defer.Deferred:
    """Fires when the tree's drain walk reaches the gateway."""
    entered = defer.Deferred()
    original = daemon.gateway.drain

    def drain():
        d = original()
        if not entered.called:
            entered.callback(None)
        return d

    daemon.gateway.drain = drain
    return entered


def add_hold_method(daemon: RunningDaemon) -> list[defer.Deferred]:
    """A gateway method that stays in flight until the test fires it."""
    held: list[defer.Deferred] = []

    def hold(conn, params):
        held.append(defer.Deferred())
        return held[-1]

    daemon.gateway.methods["hold"] = hold
    return held


@pytest_twisted.inlineCallbacks
def test_in_flight_requests_finish_new_ones_get_shutting_down(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    held = add_hold_method(daemon)
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    client.send("hold", request_id="slow-1")
    client.send("hold", request_id="slow-2")
    yield client.request("ping")  # the holds are now in flight
    assert daemon.gateway.status()["inflight"] == 2

    stopping = daemon.stop()
    # Listening stopped at once: a new client is refused.
    with pytest.raises(ConnectionRefusedError):
        yield wsclient.connect(daemon.gateway_port)
    # /health and /readyz still answer, saying so.
    code, _, body = yield daemon.get("/readyz")
    assert code == 503 and b"draining" in body
    code, _, body = yield daemon.get("/health")
    assert code == 503 and b'"status":"draining"' in body
    # A request on an open connection is refused politely.
    client.send("ping", request_id="late")
    late = yield client.next()
    assert (late["id"], late["error"]["code"]) == ("late", "shutting_down")
    assert not stopping.called

    held[0].callback({"n": 1})
    first = yield client.next()
    assert first == {"type": "res", "id": "slow-1", "ok": True, "payload": {"n": 1}}
    assert not stopping.called
    held[1].callback({"n": 2})
    second = yield client.next()
    assert second["id"] == "slow-2" and second["ok"]

    code = yield client.closed
    assert code == 1001
    yield stopping
    assert daemon.runtime.phase == "stopped"
    assert set(daemon.runtime.services.values()) == {"stopped"}


@pytest_twisted.inlineCallbacks
def test_drain_timeout_abandons_what_is_left_and_logs_it(tmp_path) -> None:
    from twisted.internet.task import Clock

    daemon = RunningDaemon(str(tmp_path), daemon_config(daemon={"drain_timeout": "5s"}))
    clock = Clock()
    daemon.gateway.clock = clock
    held = add_hold_method(daemon)
    abandoned = metrics.REGISTRY.get_sample_value("openclaw_drain_abandoned_requests_total")
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    client.send("hold", request_id="stuck")
    yield client.request("ping")
    entered = gateway_drain_entered(daemon)
    stopping = daemon.stop()
    yield entered
    clock.advance(4.9)
    assert not stopping.called
    clock.advance(0.1)
    assert (yield client.closed) == 1001
    yield stopping
    assert metrics.REGISTRY.get_sample_value("openclaw_drain_abandoned_requests_total") == abandoned + 1
    held[0].callback({})  # finishing late is harmless
    log = (tmp_path / "logs" / "combined.log").read_text()
    assert "openclaw:gateway:drain-abandoned" in log and "stuck" in log


@pytest_twisted.inlineCallbacks
def test_hurry_stops_waiting_at_once(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    add_hold_method(daemon)
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    client.send("hold", request_id="stuck")
    yield client.request("ping")
    entered = gateway_drain_entered(daemon)
    stopping = daemon.stop()
    yield entered
    assert not stopping.called
    daemon.service.hurry()
    assert (yield client.closed) == 1001
    yield stopping


@pytest_twisted.inlineCallbacks
def test_hurry_before_the_gateway_drains_is_remembered(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    add_hold_method(daemon)
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    client.send("hold", request_id="stuck")
    yield client.request("ping")
    daemon.gateway.hurry()  # e.g. a second SIGINT while earlier services drain
    yield daemon.stop()
    assert (yield client.closed) == 1001


@pytest_twisted.inlineCallbacks
def test_idle_daemon_drains_and_saves_state(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    yield daemon.stop()
    assert (yield client.closed) == 1001
    state = (tmp_path / "data" / "gateway-state.json").read_text()
    assert "webchat:test" in state
