"""
Reloads of the services that run on ``openclaw.periodic.PeriodicService``:
a new interval goes through ``set_interval`` (no second timer), and the
heartbeat's dead-man deadline follows its interval.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from openclaw.config import HeartbeatConfig, build_config
from openclaw.proactive.checks import ChecksService
from openclaw.proactive.heartbeat import HeartbeatService
from openclaw.proactive.probes import ProbeResult
from openclaw.runtime import Runtime
from openclaw.state import StateService
from openclaw.store.pruning import FIRST_AFTER, PruneService
from tests.fakes import StateStore
from tests.test_heartbeat import FakeBrain, FakeNotifier, Journal, TOKEN

START = 1_736_935_200.0
DAY = 86400.0


def heartbeat(tmp_path: Any, every: float = 1800.0) -> tuple[Clock, HeartbeatService]:
    clock = Clock()
    clock.advance(START)
    (tmp_path / "HEARTBEAT.md").write_text("- Is the disk full?\n")
    service = HeartbeatService(Runtime(clock), HeartbeatConfig(every=every), str(tmp_path), FakeBrain(TOKEN),
                               Journal(), FakeNotifier())
    service.startService()
    return clock, service


def test_a_shorter_heartbeat_interval_replans_the_beat_and_the_deadline(tmp_path) -> None:
    clock, service = heartbeat(tmp_path)
    assert service.next_beat() == START + 1800 and service.deadline == START + 3600
    clock.advance(100)
    service.reconfigure(build_config({"heartbeat": {"every": "10m"}}))
    assert service.every == 600.0
    assert service.next_beat() == START + 600 and service.deadline == START + 1200
    assert len([c for c in clock.getDelayedCalls() if c.active()]) == 2  # the loop's timer and the watchdog
    clock.advance(500)
    assert service.last is not None and service.last["verdict"] == "ok"
    assert service.next_beat() == START + 1200 and service.deadline == START + 1800


def test_a_heartbeat_turned_off_by_a_reload_is_never_overdue_and_back_on_plans_again(tmp_path) -> None:
    clock, service = heartbeat(tmp_path)
    service.reconfigure(build_config({"heartbeat": {"every": 0}}))
    assert service.next_beat() is None and service.deadline is None
    assert [c for c in clock.getDelayedCalls() if c.active()] == []
    clock.advance(10 * DAY)
    assert not service.overdue() and service.problems() == []
    service.reconfigure(build_config({"heartbeat": {"every": "1h"}}))
    assert service.next_beat() == clock.seconds() and service.deadline == clock.seconds() + 3600


def test_a_reload_during_a_beat_changes_the_interval_the_beat_plans_with(tmp_path) -> None:
    clock, service = heartbeat(tmp_path)
    held: Deferred = Deferred()
    service.loop._call = lambda: held  # a beat that takes its time
    woken = service.wake()
    clock.advance(0)
    assert service.loop.busy
    service.reconfigure(build_config({"heartbeat": {"every": "10m"}}))
    assert service.next_beat() is None  # the beat in flight plans the next one when it ends
    clock.advance(5)
    held.callback({"verdict": "ok"})
    assert woken.result == {"verdict": "ok"} and service.next_beat() == START + 5 + 600


def test_a_new_save_interval_reschedules_saving_from_the_last_save(tmp_path) -> None:
    clock = Clock()
    clock.advance(START)
    state = StateService(Runtime(clock), str(tmp_path / "state.json"), 60.0)
    state.startService()
    assert state.loop.next_call() == START + 60
    clock.advance(30)
    state.reconfigure(build_config({"state": {"save_every": "10s"}}))
    assert state.save_every == 10.0 and state.loop.next_call() == START + 30  # due already: saved at once
    clock.advance(0)
    assert (tmp_path / "state.json").exists() and state.loop.next_call() == START + 40
    state.reconfigure(build_config({"state": {"save_every": 0}}))
    assert state.loop.next_call() is None and [c for c in clock.getDelayedCalls() if c.active()] == []
    state.stopService()


class PruneStore:
    def __init__(self) -> None:
        self.passes: list[float] = []

    def prune(self, before: float, limit: int) -> Deferred:
        self.passes.append(before)
        return succeed({"outbox": 0, "inbound": 0, "journal": 0})


def test_retention_turned_on_prunes_a_minute_later_and_off_stops_pruning() -> None:
    clock, store = Clock(), PruneStore()
    clock.advance(START)
    prune = PruneService(clock, store, retention=0, every=3600.0)
    prune.startService()
    clock.advance(DAY)
    assert store.passes == [] and prune.loop.next_call() is None
    prune.reconfigure(build_config({"store": {"retention": "30d"}}))
    assert prune.loop.next_call() == START + DAY + FIRST_AFTER
    clock.advance(FIRST_AFTER)
    assert len(store.passes) == 1 and prune.loop.next_call() == START + DAY + FIRST_AFTER + 3600
    prune.reconfigure(build_config({"store": {"retention": 0}}))
    assert prune.loop.next_call() is None
    clock.advance(10 * DAY)
    assert len(store.passes) == 1
    prune.stopService()


def test_a_check_reload_changes_intervals_adds_and_removes_loops() -> None:
    clock = Clock()
    calls: dict[str, int] = {"a": 0, "b": 0}

    def probe(name: str) -> Any:
        def run() -> Deferred:
            calls[name] += 1
            return succeed(ProbeResult(True, 0.1, "ok"))
        return run

    def config(*checks: tuple[str, str]) -> Any:
        return build_config({"checks": [{"name": n, "type": "tcp", "target": "h:1", "every": e} for n, e in checks]})

    first = config(("a", "1m"))
    checks = ChecksService(first.checks, StateStore(), None, clock, probes={"a": probe("a"), "b": probe("b")})
    checks.startService()
    assert calls == {"a": 1, "b": 0} and checks.loops["a"].next_call() == 60
    clock.advance(10)
    checks.reconfigure(config(("a", "5m"), ("b", "1m")))
    # a changed: probed again at once, then every 5 minutes; b added: probed at start, then every minute
    assert calls == {"a": 2, "b": 1}
    assert checks.loops["a"].next_call() == 310 and checks.loops["b"].next_call() == 70
    checks.reconfigure(config(("b", "1m")))
    assert set(checks.loops) == {"b"} and [s["name"] for s in checks.states()] == ["b"]
    for _ in range(10):
        clock.advance(60)
    assert calls == {"a": 2, "b": 11}
    assert checks.drain().called
