"""The checks service on a Clock with scripted probes, and end to end over the gateway."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Site

from openclaw import metrics
from openclaw.gateway.frames import FrameError
from openclaw.proactive.checks import (
    ChecksService,
    checks_methods,
    duration,
    format_states,
    shown_target,
)
from openclaw.config.proactive import CheckConfig
from openclaw.proactive.probes import ProbeResult
from tests import wsclient
from tests.daemon import RunningDaemon, daemon_config
from tests.fakes import StateStore


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []
        self.failures = 0  # how many of the next calls fail

    def notify(self, kind: str, source: str, message: str, dedupe_key: str, target: str = "") -> Deferred:
        if self.failures:
            self.failures -= 1
            return fail(RuntimeError("store down"))
        self.sent.append((kind, source, message, dedupe_key))
        return succeed(None)


class Script:
    """A probe answering from a list: True/False, or a Deferred to hold the run open."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        r = self.results.pop(0)
        return r if isinstance(r, Deferred) else succeed(ProbeResult(r, 0.25, "HTTP 200" if r else "HTTP 503"))


WEB = CheckConfig(name="web", type="http", target="https://user:secret@example.org/health", every=60.0,
                  fail_after=3)


def service(probe: Script, store: StateStore | None = None, notifier: FakeNotifier | None = None,
            check: CheckConfig = WEB, clock: Clock | None = None) -> ChecksService:
    return ChecksService([check], store or StateStore(), notifier or FakeNotifier(), clock or Clock(),
                         probes={check.name: probe}, timezone="UTC")


def test_alert_once_after_fail_after_then_recovery() -> None:
    probe = Script(True, False, False, False, False, True, True)
    checks = service(probe)
    woken: list[str] = []
    checks.on_change = woken.append  # the heartbeat's wake in the tree
    checks.startService()  # the first probe runs at once
    checks.clock.pump([60] * 6)
    kinds = [(kind, key) for kind, _, _, key in checks.notifier.sent]
    assert kinds == [("alert", "check:web:1-60:alert"), ("recovery", "check:web:1-60:recovery")]
    assert woken == ["web", "web"]
    assert checks.notifier.sent[0][2] == "web is DOWN: HTTP 503 (3 failures since 00:01)"
    assert checks.notifier.sent[1][2] == "web is back up after 4m"
    journal = checks.store.journal
    assert [p["ok"] for _, _, p in journal] == [True, False, False, False, False, True, True]
    assert journal[1] == ("check", 60.0, {"check": "web", "ok": False, "latency": 0.25, "detail": "HTTP 503"})
    assert metrics.REGISTRY.get_sample_value("openclaw_check_up", {"check": "web"}) == 1
    assert metrics.REGISTRY.get_sample_value("openclaw_check_latency_seconds", {"check": "web"}) == 0.25
    [state] = checks.states()
    assert state == {"name": "web", "type": "http", "target": "https://example.org/health", "ok": True,
                     "since": 300.0, "last_latency": 0.25, "last_detail": "HTTP 200", "failures": 0,
                     "alerting": False, "flapping": False}
    checks.stopService()


def test_resource_checks_word_their_messages_differently() -> None:
    disk = CheckConfig(name="disk-root", type="disk", target="/", every=10.0, fail_after=1)
    checks = service(Script(False, True), check=disk)
    checks.startService()
    checks.clock.advance(10)
    assert [m for _, _, m, _ in checks.notifier.sent] == ["disk-root is failing: HTTP 503 (1 failure since 00:00)",
                                                          "disk-root is OK again after 10s"]
    checks.stopService()


def test_runs_of_one_check_never_overlap() -> None:
    pending: Deferred = Deferred()
    probe = Script(pending, False)
    checks = service(probe)
    checks.startService()
    checks.clock.advance(600)  # ten intervals while the first probe hangs
    joined = checks.run("web")
    assert probe.calls == 1 and not joined.called
    pending.callback(ProbeResult(True, 9.0, "HTTP 200"))
    assert joined.result["ok"] is True and joined.result["last_latency"] == 9.0
    checks.clock.advance(60)
    assert probe.calls == 2
    checks.stopService()


def test_an_ongoing_incident_is_not_alerted_again_after_a_restart() -> None:
    store, notifier = StateStore(), FakeNotifier()
    first = service(Script(False, False, False), store, notifier)
    first.startService()
    first.clock.pump([60] * 2)
    first.stopService()
    assert [k for k, *_ in notifier.sent] == ["alert"]
    assert store.state["check:web"]["alerting"] is True
    second = service(Script(False, False, True), store, notifier)
    second.startService()
    assert second.states()[0]["alerting"] is True
    second.clock.pump([60] * 2)
    assert [(k, key) for k, _, _, key in notifier.sent] == [
        ("alert", "check:web:1-0:alert"), ("recovery", "check:web:1-0:recovery")]
    second.stopService()


def test_a_failed_send_is_decided_again_with_the_same_key() -> None:
    notifier = FakeNotifier()
    notifier.failures = 1
    checks = service(Script(False, False, False, False), notifier=notifier)
    checks.startService()
    checks.clock.pump([60] * 2)  # the third failure's alert fails to send
    assert notifier.sent == [] and checks.states()[0]["alerting"] is False
    checks.clock.advance(60)
    assert [(k, key) for k, _, _, key in notifier.sent] == [("alert", "check:web:1-0:alert")]
    checks.stopService()


def test_realerts_carry_their_own_dedupe_key() -> None:
    check = CheckConfig(name="web", type="tcp", target="h:1", every=60.0, fail_after=1, realert_every=120.0)
    checks = service(Script(*[False] * 6), check=check)
    checks.startService()
    checks.clock.pump([60] * 5)
    sent = checks.notifier.sent
    assert [(k, key) for k, _, _, key in sent] == [
        ("alert", "check:web:1-0:alert"), ("alert", "check:web:1-0:realert-1"), ("alert", "check:web:1-0:realert-2")]
    assert sent[1][2] == "web is still DOWN: HTTP 503 (for 2m, since 00:00)"
    checks.stopService()


def test_drain_stops_probing_and_waits_for_the_run_in_flight() -> None:
    pending: Deferred = Deferred()
    probe = Script(pending)
    checks = service(probe)
    checks.startService()
    drained = checks.drain()
    assert not drained.called
    pending.callback(ProbeResult(False, 1.0, "HTTP 503"))
    assert drained.called
    checks.clock.advance(600)
    assert probe.calls == 1
    checks.stopService()


def test_gateway_methods_list_and_run() -> None:
    checks = service(Script(True, False))
    methods = checks_methods(checks)
    assert methods["checks.list"](None, {}) == {"checks": checks.states()}
    assert checks.states()[0]["ok"] is None  # not started: nothing probed yet
    ran = methods["checks.run"](None, {"name": "web"})
    assert ran.result["check"]["ok"] is True
    for bad in ({}, {"name": "nope"}, {"name": ["web"]}):
        with pytest.raises(FrameError) as e:
            methods["checks.run"](None, bad)
        assert e.value.code == "invalid_field"


def test_states_print_as_a_table() -> None:
    checks = service(Script(False, False))
    assert format_states([], 0.0) == "no checks configured"
    assert format_states(checks.states(), 0.0) == "web  http  pending"
    checks.startService()
    checks.clock.advance(90)
    assert format_states(checks.states(), 90.0) == "web  http  DOWN 1m  0.250s  HTTP 503"
    checks.stopService()


def test_helpers() -> None:
    assert [duration(s) for s in (5, 240, 7500, 4 * 86400 + 3600)] == ["5s", "4m", "2h 5m", "4d 1h"]
    assert shown_target("https://u:p@h/x") == "https://h/x" and shown_target("h:1") == "h:1"


# End to end: real HTTP server, store, notifier, gateway and WebSocket client


class Health(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"ok"


@pytest_twisted.inlineCallbacks
def test_a_server_going_down_and_back_gives_one_alert_and_one_recovery_on_the_gateway(tmp_path) -> None:
    site = Site(Health())
    server = reactor.listenTCP(0, site, interface="127.0.0.1")
    port = server.getHost().port
    # The real tree (tree.build_service), with one check and a long interval
    # so that only the runs below probe.
    daemon = RunningDaemon(str(tmp_path), daemon_config(checks=[{
        "name": "website", "type": "http", "target": f"http://127.0.0.1:{port}/", "every": "1h",
        "fail_after": 2, "timeout": "5s"}]))
    try:
        yield check_round_trip(daemon, server, port, site)
    finally:
        yield daemon.stop()
        yield server_stopped(server)


def server_stopped(server: Any) -> Any:
    return server.stopListening() if getattr(server, "connected", False) else None


@defer.inlineCallbacks
def check_round_trip(daemon: RunningDaemon, server: Any, port: int, site: Site) -> Any:
    checks = daemon.service.getServiceNamed("checks")
    store = daemon.service.getServiceNamed("store")
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    reply = yield client.request("subscribe", {"session": "*"})
    assert reply["payload"] == {"subscribed": "*"}

    yield checks.loaded
    up = yield checks.run("website")  # may join the probe made at start
    assert up["ok"] is True
    probed_up = len((yield store.journal("check", 0)))
    yield server.stopListening()
    for _ in range(3):  # down: alert on the 2nd failure, nothing on the 3rd
        down = yield checks.run("website")
    assert down["ok"] is False and down["alerting"] and down["last_detail"] == "connection refused"
    server = reactor.listenTCP(port, site, interface="127.0.0.1")
    try:
        for _ in range(2):  # back: one recovery, then quiet
            back = yield checks.run("website")
    finally:
        yield server.stopListening()
    assert back["ok"] is True and not back["alerting"]

    client.send("checks.list", request_id="list")
    events = []
    while True:  # the events pushed so far all arrive before this answer
        frame = yield client.next()
        if frame["type"] != "event":
            break
        events.append(frame)
    assert frame["id"] == "list" and frame["payload"]["checks"][0]["name"] == "website"
    alerts = [e["payload"] for e in events if e["event"] == "alert"]
    assert [(a["kind"], a["check"]) for a in alerts] == [("alert", "website"), ("recovery", "website")]
    assert alerts[0]["message"].startswith("website is DOWN: connection refused (2 failures since ")
    assert alerts[1]["message"].startswith("website is back up after ")
    journal = yield store.journal("check", 0)
    assert [r["payload"]["ok"] for r in journal][probed_up - 1:] == [True, False, False, False, True, True]
    yield client.close()
