"""
``RedisCluster`` on a real Redis server of the test's own: instances that
register and see each other, one scheduler holder at a time with the work
it guards (a ``Gated`` service) running there only, takeover after the
holder dies, a paused holder that learns it lost the lease before acting and
whose late write is refused, and connector leases spread across instances.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.task import Clock

from openclaw.cluster import SCHEDULER, cluster_methods, connector_lease
from openclaw.cluster.gate import Gated
from openclaw.cluster.redis_lease import Fenced
from openclaw.cluster.service import RedisCluster
from openclaw.config import ClusterConfig
from tests.waiting import until

TTL = 0.6


class Work(Service):
    """The guarded work: counts its starts and stops."""

    def __init__(self) -> None:
        self.starts = self.stops = 0

    def startService(self) -> None:
        Service.startService(self)
        self.starts += 1

    def stopService(self) -> Any:
        Service.stopService(self)
        self.stops += 1


@pytest.fixture
def make(redis_server) -> Any:
    made: list[RedisCluster] = []

    def make(clock: Any = reactor, name: str = "") -> RedisCluster:
        cluster = RedisCluster(clock, f"redis://127.0.0.1:{redis_server.port}/0", "t:",
                               ClusterConfig(lease_ttl=TTL, instance_ttl=TTL), instance_id=f"host:1:{name or len(made)}")
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        if cluster.running:
            pytest_twisted.blockon(cluster.stopService())


def gated(cluster: RedisCluster, lease: str = SCHEDULER) -> Work:
    work = Work()
    gate = Gated(work, cluster, lease)
    gate.setName("work")
    gate.startService()
    return work


def die(cluster: RedisCluster) -> Any:
    """Like SIGKILL: no more requests, nothing released; Redis lets the keys expire."""
    for keeper in cluster.keepers.values():
        keeper.loop.stopService()
        if keeper._expiry is not None:
            keeper._expiry.cancel()
    cluster.registry.loop.stopService()
    cluster.running = False
    return cluster._redis.disconnect()


@pytest_twisted.inlineCallbacks
def test_one_holder_runs_the_work_and_another_takes_over_when_it_dies(make) -> None:
    a, b = make(name="a"), make(name="b")
    work_a, work_b = gated(a), gated(b)
    a.startService()
    b.startService()
    yield until(lambda: work_a.running or work_b.running, what="a holder")
    holder, other = (a, b) if work_a.running else (b, a)
    holder_work, other_work = (work_a, work_b) if holder is a else (work_b, work_a)
    yield until(lambda: len(other.registry.known) == 2, what="both instances listed")
    assert not other_work.running and other.holds(SCHEDULER) is False and holder.holds(SCHEDULER)
    assert (yield other.alive(holder.instance_id)) is True
    token = holder.keepers[SCHEDULER].holding.token
    died_at = reactor.seconds()
    yield die(holder)
    yield until(lambda: other_work.running, what="the takeover")
    assert reactor.seconds() - died_at < TTL + TTL / 3 + 1.0
    assert other.keepers[SCHEDULER].holding.token == token + 1
    yield until(lambda: [i["id"] for i in other.registry.known] == [other.instance_id], what="the dead one unlisted")
    assert (yield other.alive(holder.instance_id)) is False


@pytest_twisted.inlineCallbacks
def test_a_paused_holder_learns_it_lost_the_lease_and_its_late_write_is_refused(make) -> None:
    paused = Clock()
    a, b = make(paused, "a"), make(name="b")
    work_a, work_b = gated(a), gated(b)
    a.startService()
    yield until(lambda: work_a.running, what="a holds the scheduler")
    b.startService()
    # a is paused: its clock stands still while Redis's TTL runs out and b takes the lease.
    yield until(lambda: work_b.running, what="b takes over")
    assert a.holds(SCHEDULER)  # a has not looked at its clock yet
    paused.advance(TTL * 2)  # it wakes: the first question says the lease is gone
    assert not a.holds(SCHEDULER) and not work_a.running and work_a.stops == 1
    late = yield DeferredList([a.leases.guarded_set_state(SCHEDULER, 1, "cron:x", {"late": True})],
                              consumeErrors=True)
    assert late[0][1].check(Fenced)
    refused = yield DeferredList([a.guarded_set_state(SCHEDULER, "cron:x", {"late": True})], consumeErrors=True)
    assert refused[0][1].check(Fenced)
    yield b.guarded_set_state(SCHEDULER, "cron:x", {"holder": "b"})
    assert (yield b._redis.hget("t:state", "cron:x")) == '{"holder": "b"}'


@pytest_twisted.inlineCallbacks
def test_connector_leases_spread_across_instances(make) -> None:
    accounts = [connector_lease("telegram", f"bot{i}") for i in range(4)]
    a = make(name="a")
    works_a = [gated(a, name) for name in accounts]
    a.startService()
    yield until(lambda: all(w.running for w in works_a), what="a alone takes every account")
    b = make(name="b")
    works_b = [gated(b, name) for name in accounts]
    b.startService()
    yield until(lambda: sum(w.running for w in works_b) == 2 and sum(w.running for w in works_a) == 2,
                what="two accounts each")
    assert all(wa.running != wb.running for wa, wb in zip(works_a, works_b))
    status = yield cluster_methods(b)["cluster.status"](None, {})
    assert status["instance_id"] == b.instance_id and len(status["holds"]) == 2
    assert sorted(i["id"] for i in status["instances"]) == [a.instance_id, b.instance_id]


@pytest_twisted.inlineCallbacks
def test_a_stopped_instance_releases_its_leases_at_once(make) -> None:
    a, b = make(name="a"), make(name="b")
    work_a, work_b = gated(a), gated(b)
    a.startService()
    yield until(lambda: work_a.running, what="a holds the scheduler")
    b.startService()
    yield a.stopService()
    assert not work_a.running
    assert not ((yield b._redis.get("t:lease:scheduler")) or "").startswith(a.instance_id)
    assert (yield b.alive(a.instance_id)) is False
    yield until(lambda: work_b.running, timeout=TTL, what="b takes the released lease within one renew period")


def test_problems_name_an_unreachable_redis_and_a_missing_scheduler_holder() -> None:
    clock = Clock()
    cluster = RedisCluster(clock, "redis://127.0.0.1:1/0", "t:", ClusterConfig(lease_ttl=15, instance_ttl=15))
    assert cluster.problems() == []
    clock.advance(30)
    problems = cluster.problems()
    assert any("cannot reach Redis" in p for p in problems)
    assert any("no instance holds the scheduler" in p for p in problems)


@pytest_twisted.inlineCallbacks
def test_a_connector_removed_by_a_reload_lets_its_lease_go(make) -> None:
    lease = connector_lease("telegram", "bot")
    a = make(name="a")
    a.startService()
    work = Work()
    gate = Gated(work, a, lease)
    gate.startService()
    yield until(lambda: work.running, what="a polls")
    yield gate.stopService()
    assert lease not in a.keepers and not a.holds(lease)
    assert (yield a._redis.get(f"t:lease:{lease}")) is None
