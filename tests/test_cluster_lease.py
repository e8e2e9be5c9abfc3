"""
The lease decisions (``openclaw.cluster.lease``) against a model of the
Redis scripts, driven by hypothesis: instances whose clocks run at skewed
rates and offsets, delayed requests and replies, and pauses longer than the
TTL.  Whatever happens, no two instances trust the lease at one instant, a
trusted lease is always the one Redis keeps, and the fenced writes Redis
accepts never go back to an older token.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from openclaw.cluster.lease import ACQUIRE, LOST, RENEW, Holding, Timing, extras, may_take, share
from tests import strategies

TTL = 15.0
#: Seconds an instance waits for a request's answer before it sends another.
TIMEOUT = 5.0
#: Clock-rate skew the default margin (a fifth of the TTL) must cover, and more.
SKEW = 0.05


@dataclass
class ModelRedis:
    """What the Lua scripts do, on Redis's clock (real time here)."""

    holder: tuple[int, int] | None = None
    expires: float = -math.inf
    fence: int = 0
    accepted: list[int] = field(default_factory=list)

    def current(self, now: float) -> tuple[int, int] | None:
        return self.holder if now < self.expires else None

    def acquire(self, who: int, now: float) -> int | None:
        if self.current(now) is not None:
            return None
        self.fence += 1
        self.holder, self.expires = (who, self.fence), now + TTL
        return self.fence

    def renew(self, who: int, token: int, now: float) -> bool:
        if self.current(now) != (who, token):
            return False
        self.expires = now + TTL
        return True

    def write(self, token: int) -> bool:
        if token < self.fence:
            return False
        self.accepted.append(token)
        return True


@dataclass
class Instance:
    offset: float
    rate: float
    holding: Holding
    ticks: list[float]
    delays: list[tuple[float, float]]
    #: The one request whose answer counts, and when it was sent (real time):
    #: one at a time, abandoned after ``TIMEOUT`` (its late answer ignored).
    asked: int = -1
    asked_at: float = -math.inf

    def local(self, real: float) -> float:
        return self.offset + self.rate * real

    def real(self, local: float) -> float:
        return (local - self.offset) / self.rate


def instances() -> st.SearchStrategy[list[Instance]]:
    """2-3 instances: skewed clocks, gaps between ticks (some far longer than the TTL: pauses), delays."""
    one = st.builds(
        Instance, offset=strategies.clock_offsets(), rate=strategies.clock_rates(SKEW),
        holding=st.builds(lambda: Holding(Timing.for_ttl(TTL))),
        ticks=st.lists(strategies.tick_gaps(TTL), min_size=5, max_size=30),
        delays=st.lists(strategies.network_delays(TTL), max_size=30),
    )
    return st.lists(one, min_size=2, max_size=3)


def run(cluster: list[Instance], redis: ModelRedis, check: bool = True) -> None:
    """Events in real-time order: ticks (decide, send, act), requests at Redis, replies."""
    seq = itertools.count()
    events: list[tuple[float, int, str, int, tuple]] = []
    for i, inst in enumerate(cluster):
        heapq.heappush(events, (abs(inst.offset) % 1.0, next(seq), "tick", i, ()))
    while events:
        now, _, kind, i, data = heapq.heappop(events)
        inst = cluster[i]
        local = inst.local(now)
        if kind == "tick":
            d1, d2 = inst.delays.pop(0) if inst.delays else (0.0, 0.0)
            step = inst.holding.next_step(local)
            if step == LOST:
                inst.holding.drop()
                step = ACQUIRE
            if now - inst.asked_at >= TIMEOUT:
                inst.asked, inst.asked_at = next(seq), now
                if step == ACQUIRE:
                    heapq.heappush(events, (now + d1, next(seq), "acquire", i, (local, d2, inst.asked)))
                else:
                    heapq.heappush(events, (now + d1, next(seq), "renew", i,
                                            (local, d2, inst.asked, inst.holding.token)))
            if inst.holding.held(local):  # the guarded work: a fenced write
                heapq.heappush(events, (now + d1, next(seq), "write", i, (inst.holding.token,)))
            if inst.ticks:
                heapq.heappush(events, (now + inst.ticks.pop(0), next(seq), "tick", i, ()))
        elif kind == "acquire":
            sent, d2, asked = data
            token = redis.acquire(i, now)
            heapq.heappush(events, (now + d2, next(seq), "acquired", i, (sent, asked, token)))
        elif kind == "renew":
            sent, d2, asked, token = data
            ok = redis.renew(i, token, now)
            heapq.heappush(events, (now + d2, next(seq), "renewed", i, (sent, asked, token, ok)))
        elif kind == "write":
            redis.write(*data)
        elif inst.asked != data[1]:
            pass  # an abandoned request's late answer
        elif kind == "acquired":
            sent, _, token = data
            inst.asked_at = -math.inf
            if token is not None:
                assert not inst.holding.held(local), "acquired while holding"
                inst.holding.acquired(token, sent)
        elif kind == "renewed":
            sent, _, token, ok = data
            inst.asked_at = -math.inf
            if inst.holding.token == token and not (ok and inst.holding.renewed(sent, local)):
                inst.holding.drop()
        if check:
            assert_safe(cluster, redis, now)


def assert_safe(cluster: list[Instance], redis: ModelRedis, now: float) -> None:
    trusting = [i for i, inst in enumerate(cluster) if inst.holding.held(inst.local(now))]
    assert len(trusting) <= 1, f"{trusting} all trust the lease at {now}"
    for i in trusting:
        inst = cluster[i]
        assert redis.current(now) == (i, inst.holding.token)
        # Until the trust runs out (in real time), Redis keeps the key: no gap for another to act in.
        assert inst.real(inst.holding.until) <= redis.expires + 1e-6


@settings(max_examples=300, deadline=None)
@given(instances())
def test_one_holder_at_a_time_whatever_the_clocks_and_pauses(cluster: list[Instance]) -> None:
    redis = ModelRedis()
    run(cluster, redis)
    assert redis.accepted == sorted(redis.accepted), "a stale token's write was accepted after a newer one"


@settings(max_examples=200, deadline=None)
@given(strategies.clock_rates(SKEW), st.floats(0, 2.0), st.integers(1, 10))
def test_a_pause_longer_than_the_ttl_is_noticed_before_acting(rate: float, delay: float, pause_ttls: int) -> None:
    """Paused past its TTL, a holder's first question after waking says it lost the lease; its write is refused."""
    holding = Holding(Timing.for_ttl(TTL))
    redis = ModelRedis()
    token = redis.acquire(0, delay)
    holding.acquired(token, 0.0)
    assert holding.held(rate * delay)
    woke = (pause_ttls + 1) * TTL + delay  # real time; meanwhile another acquired
    other = redis.acquire(1, woke - 0.001)
    assert other == token + 1
    assert not holding.held(rate * woke)
    assert holding.next_step(rate * woke) == LOST
    assert not redis.write(token)
    assert not holding.renewed(rate * woke - 1, rate * woke)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, TTL / 3), min_size=1, max_size=20))
def test_a_holder_that_renews_every_period_keeps_the_lease(delays: list[float]) -> None:
    """Renews on time whose replies take up to a third of the TTL never lose the lease."""
    timing = Timing.for_ttl(TTL)
    holding = Holding(timing)
    holding.acquired(1, 0.0)
    now = 0.0
    for d in delays:
        now += timing.renew_every
        assert holding.next_step(now) == RENEW
        assert holding.renewed(now, now + d)
    assert holding.held(now + timing.renew_every)


def test_a_late_renew_reply_does_not_revive_the_lease() -> None:
    holding = Holding(Timing.for_ttl(TTL))
    holding.acquired(3, 0.0)
    assert holding.held(11.9) and not holding.held(12.0)
    assert not holding.renewed(11.0, 12.5)
    assert holding.drop() == 3 and holding.next_step(13.0) == ACQUIRE


@given(st.integers(1, 50), st.integers(1, 10))
def test_spreading_connector_leases(accounts: int, live: int) -> None:
    """Greedy takers that respect the share end with every account held, none holding more than its share."""
    fair = share(accounts, live)
    held = [0] * live
    free = accounts
    for _ in range(accounts * live):
        for i in range(live):
            if free and may_take(held[i], accounts, live):
                held[i] += 1
                free -= 1
    assert free == 0
    assert max(held) <= fair and all(extras(h, accounts, live) == 0 for h in held)
    assert fair * live >= accounts and (fair - 1) * live < accounts


@given(st.integers(1, 50), st.integers(1, 10), st.integers(1, 10))
def test_an_instance_over_its_share_gives_back_extras(accounts: int, before: int, after: int) -> None:
    """After instances join, one that holds all gives back exactly what is over its new share."""
    held = accounts
    give = extras(held, accounts, after)
    assert held - give == min(held, share(accounts, after))
    assert not may_take(held - give, accounts, after) or held - give < share(accounts, after)
