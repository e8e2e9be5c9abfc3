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
    gate = Gated(child, cluster, SCHEDULER)
    gate.setName("child")
    cluster.grant()
    assert child.journal == []  # the tree has not started it yet
    gate.startService()
    assert child.journal == ["start"] and gate.active
    cluster.take()
    assert child.journal == ["start", "stop"] and not gate.active and gate.running
    cluster.grant()
    assert child.journal == ["start", "stop", "start"]
    gate.stopService()
    assert cluster.watchers == []  # a stopped gate (a connector a reload removed) lets the lease go
    cluster.grant()
    assert child.journal == ["start", "stop", "start", "stop"]


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
