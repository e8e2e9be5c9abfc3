"""
``LeaseKeeper`` (timers, timeouts, step-down) driven by hypothesis on
``task.Clock``s: two or three instances whose clocks run at skewed rates,
requests and answers delayed on the way, and pauses longer than the TTL
(a paused process's clock jumps when it wakes, as the reactor's does).
The Redis scripts are modelled (``ModelRedis``, the same model the pure
logic is checked against); the scripts themselves are tested on a real
Redis in ``test_cluster_redis``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from openclaw.cluster import SCHEDULER
from openclaw.cluster.keeper import LeaseKeeper
from openclaw.cluster.lease import Timing
from tests import strategies
from tests.test_cluster_lease import SKEW, TTL, ModelRedis

STEP = 0.25


@dataclass
class Network:
    """Requests reach the model after ``there`` seconds (real time) and are answered ``back`` seconds later."""

    redis: ModelRedis
    now: float = 0.0
    queue: list[tuple[float, Any]] = field(default_factory=list)

    def send(self, apply: Any, delays: list[tuple[float, float]]) -> Deferred:
        d: Deferred = Deferred()
        there, back = delays.pop(0) if delays else (0.0, 0.0)

        def arrive() -> None:
            result = apply(self.now)
            self.queue.append((self.now + back, lambda: d.called or d.callback(result)))

        self.queue.append((self.now + there, arrive))
        return d

    def run_due(self) -> None:
        while True:
            due = sorted((t, i) for i, (t, _) in enumerate(self.queue) if t <= self.now)
            if not due:
                return
            _, i = due[0]
            self.queue.pop(i)[1]()


class ModelLeases:
    """``RedisLeases``'s calls for one instance, through the network to the model."""

    def __init__(self, net: Network, who: int, delays: list[tuple[float, float]]) -> None:
        self.net, self.who, self.delays = net, who, delays

    def acquire(self, name: str, instance_id: str, ttl: float) -> Deferred:
        return self.net.send(lambda now: self.net.redis.acquire(self.who, now), self.delays)

    def renew(self, name: str, instance_id: str, token: int, ttl: float) -> Deferred:
        return self.net.send(lambda now: self.net.redis.renew(self.who, token, now), self.delays)

    def release(self, name: str, instance_id: str, token: int) -> Deferred:
        def release(now: float) -> bool:
            if self.net.redis.current(now) == (self.who, token):
                self.net.redis.expires = now
                return True
            return False
        return self.net.send(release, self.delays)

    def write(self, token: int) -> None:
        self.net.send(lambda now: self.net.redis.write(token), [])


@dataclass
class Instance:
    rate: float
    pauses: list[tuple[int, int]]  # (from step, for steps)
    delays: list[tuple[float, float]]  # each request's (there, back), real seconds
    clock: Clock = field(default_factory=Clock)
    keeper: Any = None
    working: bool = False
    owed: float = 0.0  # clock time a pause holds back

    def paused(self, step: int) -> bool:
        return any(start <= step < start + length for start, length in self.pauses)


def instances() -> st.SearchStrategy[list[Instance]]:
    one = st.builds(Instance, rate=strategies.clock_rates(SKEW),
                    pauses=st.lists(strategies.pauses(TTL, STEP, 300), max_size=3),
                    delays=st.lists(strategies.coarse_delays(), max_size=40))
    return st.lists(one, min_size=2, max_size=3)


@settings(max_examples=300, deadline=None)
@given(instances())
def test_keepers_on_skewed_paused_clocks_never_trust_a_lease_redis_gave_away(cluster: list[Instance]) -> None:
    net = Network(ModelRedis())
    for i, inst in enumerate(cluster):
        leases = ModelLeases(net, i, inst.delays)
        inst.keeper = LeaseKeeper(inst.clock, leases, SCHEDULER, f"host:{i}:abc", Timing.for_ttl(TTL))

        def acquired(inst: Instance = inst) -> None:
            inst.working = True

        def lost(inst: Instance = inst) -> None:
            inst.working = False

        inst.keeper.watchers.append((acquired, lost))
        inst.keeper.start()
    for step in range(1, 400):
        net.now = step * STEP
        for i, inst in enumerate(cluster):
            inst.owed += inst.rate * STEP
            if not inst.paused(step):
                inst.clock.advance(inst.owed)  # after a pause: one jump, every overdue timer at once
                inst.owed = 0.0
                if inst.keeper.held():  # the guarded work acts, with its token
                    assert inst.working
                    inst.keeper.leases.write(inst.keeper.holding.token)
        net.run_due()
        trusting = [i for i, inst in enumerate(cluster) if not inst.paused(step) and inst.keeper.held()]
        assert len(trusting) <= 1
        for i in trusting:
            assert net.redis.current(net.now) == (i, cluster[i].keeper.holding.token)
        for inst in cluster:
            assert inst.working == inst.keeper.held() or inst.paused(step)
    assert net.redis.accepted == sorted(net.redis.accepted)
    assert net.redis.fence >= 1
