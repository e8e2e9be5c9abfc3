"""
``Gated`` (a service of the tree that runs only while a lease is held) and
``LocalCluster`` (the cluster of one, with SQLite): no Redis needed.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from openclaw.cluster import SCHEDULER, cluster_methods
from openclaw.cluster.gate import Gated
from openclaw.cluster.local import LocalCluster
from openclaw.interfaces import ICluster, IDrainable, IReconfigurable, IStatusSource
from openclaw.status import StatusSource, TreeStatus
from tests.fakes import StateStore
from tests.waiting import step_clock


@implementer(IDrainable, IReconfigurable, IStatusSource)
class Child(StatusSource, Service):
    status_key = "child"

    def __init__(self) -> None:
        self.journal: list[str] = []
        self.stopping: Deferred | None = None

    def startService(self) -> None:
        Service.startService(self)
        self.journal.append("start")

    def stopService(self) -> Deferred:
        Service.stopService(self)
        self.journal.append("stop")
        return succeed(None)

    def drain(self) -> Deferred:
        self.journal.append("drain")
        return succeed(None)

    def hurry(self) -> None:
        self.journal.append("hurry")

    def reconfigure(self, config: Any) -> None:
        self.journal.append(f"reconfigure {config}")

    def status(self) -> dict:
        return {"ok": True}

    def problems(self) -> list[str]:
        return ["child trouble"]

    def latest(self) -> str:
        return "the child's own method"


class OneLease:
    """A cluster whose one lease the test grants and takes away."""

    def __init__(self) -> None:
        self.held = False
        self.watchers: list[tuple[Any, Any]] = []

    def lease(self, name: str, on_acquired: Any, on_lost: Any) -> None:
        self.watchers.append((on_acquired, on_lost))
        if self.held:
            on_acquired()

    def unlease(self, name: str, on_acquired: Any, on_lost: Any) -> None:
        self.watchers.remove((on_acquired, on_lost))

    def holds(self, name: str) -> bool:
        return self.held

    def grant(self) -> None:
        self.held = True
        for on_acquired, _ in self.watchers:
            on_acquired()

    def take(self) -> Any:
        self.held = False
        return [on_lost() for _, on_lost in reversed(self.watchers)]


def test_the_child_runs_only_while_the_lease_is_held_and_the_tree_wants_it() -> None:
    cluster, child = OneLease(), Child()
    gate = Gated(child, cluster, SCHEDULER, standby=lambda: child.journal.append("standby"))
    gate.setName("child")
    cluster.grant()
    assert child.journal == []  # the tree has not started it yet
    gate.startService()
    assert child.journal == ["start"] and gate.active
    cluster.take()
    assert child.journal == ["start", "stop", "standby"] and not gate.active and gate.running
    cluster.grant()
    assert child.journal == ["start", "stop", "standby", "start"]
    gate.stopService()  # the tree stops: no standby
    assert cluster.watchers == []  # a stopped gate (a connector a reload removed) lets the lease go
    cluster.grant()
    assert child.journal == ["start", "stop", "standby", "start", "stop"]


def test_status_reload_and_drain_reach_the_child_through_the_gate() -> None:
    cluster, child = OneLease(), Child()
    gate = Gated(child, cluster, SCHEDULER)
    gate.setName("reports")
    assert IDrainable.providedBy(gate) and IReconfigurable.providedBy(gate) and IStatusSource.providedBy(gate)
    tree = TreeStatus([gate])
    gate.startService()
    assert tree.section("child") == {"ok": True} and tree.problems() == []  # not running here: not its problems
    assert tree.service("reports").latest() == "the child's own method"
    gate.drain()
    assert child.journal == []  # nothing to drain where it does not run
    cluster.grant()
    assert tree.problems() == ["child trouble"]
    gate.reconfigure("new")
    gate.drain()
    gate.hurry()
    assert child.journal == ["start", "reconfigure new", "drain", "hurry"]


@pytest_twisted.inlineCallbacks
def test_the_cluster_of_one_holds_every_lease_from_start_to_stop() -> None:
    store = StateStore()
    cluster = LocalCluster(Clock(), store, instance_id="host:1:abcdef")
    assert ICluster.providedBy(cluster) and cluster.alone
    child = Child()
    gate = Gated(child, cluster, SCHEDULER)
    cluster.startService()
    gate.startService()
    assert child.running and cluster.holds(SCHEDULER)
    yield cluster.guarded_set_state(SCHEDULER, "cron:x", {"due": 1})
    assert store.state == {"cron:x": {"due": 1}}
    status = yield cluster_methods(cluster)["cluster.status"](None, {})
    assert status["instance_id"] == "host:1:abcdef" and status["holds"] == [SCHEDULER]
    assert [i["id"] for i in status["instances"]] == ["host:1:abcdef"]
    assert (yield cluster.alive("host:1:abcdef")) and not (yield cluster.alive("other:2:000000"))
    yield cluster.stopService()
    assert not child.running


class HangingLeases:
    """``RedisLeases``'s calls: acquire answers at once; renews answer as the test says (or never)."""

    def __init__(self) -> None:
        self.renews: list[Deferred] = []
        self.released: list[int] = []

    def acquire(self, name: str, instance_id: str, ttl: float) -> Deferred:
        return succeed(1)

    def renew(self, name: str, instance_id: str, token: int, ttl: float) -> Deferred:
        d: Deferred = Deferred()
        self.renews.append(d)
        return d

    def release(self, name: str, instance_id: str, token: int) -> Deferred:
        self.released.append(token)
        return succeed(True)


def test_a_holder_whose_renews_hang_steps_down_before_redis_could_expire_the_lease() -> None:
    from openclaw.cluster.keeper import LeaseKeeper
    from openclaw.cluster.lease import Timing

    clock, leases = Clock(), HangingLeases()
    keeper = LeaseKeeper(clock, leases, SCHEDULER, "host:1:abcdef", Timing.for_ttl(15.0))
    events: list[tuple[str, float]] = []
    keeper.watchers.append((lambda: events.append(("acquired", clock.seconds())),
                            lambda: events.append(("lost", clock.seconds()))))
    keeper.start()
    assert events == [("acquired", 0.0)] and keeper.held()
    clock.advance(5.0)  # the first renew, sent at 5 s: answered in time, so trusted until 5 + 15 - 3
    leases.renews[-1].callback(True)
    step_clock(clock, 11.9)  # then Redis stops answering: renews (each timing out after a period) every period
    assert keeper.held() and len(leases.renews) == 3
    step_clock(clock, 0.1)
    assert events == [("acquired", 0.0), ("lost", 17.0)] and not keeper.held()
    # Redis keeps the key until 5 s + 15 s at the earliest: the work stopped 3 s before another could take it.


def test_a_held_clock_runs_timed_calls_only_while_the_lease_is_trusted() -> None:
    """After a pause every overdue timer fires at once: the scheduler's find the lease gone and do nothing."""
    from openclaw.cluster.gate import HeldClock
    from openclaw.periodic import PeriodicService

    clock, held = Clock(), [True]
    calls: list[float] = []
    loop = PeriodicService(HeldClock(clock, lambda: held[0]), 10.0, lambda: calls.append(clock.seconds()))
    loop.startService()
    clock.advance(10.0)
    assert calls == [10.0]
    held[0] = False  # the process was paused past its lease's trust; the step-down timer is due after this one
    clock.advance(30.0)
    assert calls == [10.0]
    loop.stopService()
    held[0] = True
    loop.startService()  # acquired again
    clock.advance(10.0)
    assert calls == [10.0, 50.0]
