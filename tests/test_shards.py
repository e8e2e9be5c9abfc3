"""
Inbound streams across instances (openclaw/shards.py): the pure share
decision under hypothesis, then two consumers on one real Redis: events
recorded by either are answered once each, in order per session, by the
holder of their shard; a consumer that dies with events read has them
reclaimed after its leases expire and answered once, and its late reply is
refused by the fencing token.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import Clock

from openclaw import metrics
from openclaw.cluster.lease import Timing, share
from openclaw.cluster.redis_lease import RedisLeases
from openclaw.shards import (
    SHARDS, ShardConsumer, candidates, dead_here, gone_here, lease_name, off_share, plan, shard_of,
)
from openclaw.store.redis import RedisStore
from tests.store_contract import message, reply
from tests.waiting import until

shard_sets = st.sets(st.integers(0, SHARDS - 1))


@settings(max_examples=300, deadline=None)
@given(held=shard_sets, leaving=shard_sets, busy=shard_sets, live=st.integers(1, 20))
def test_a_plan_stays_within_the_share_and_gives_back_idle_shards_first(held, leaving, busy, live) -> None:
    leaving &= held
    room, give = plan(held, leaving, busy, SHARDS, live)
    staying = held - leaving
    assert set(give) <= staying and len(set(give)) == len(give)
    assert len(staying) - len(give) + room == share(SHARDS, live) or (not room and not give)
    assert not room or not give
    if any(s in busy for s in give):
        assert all(s in busy for s in staying - set(give))


@settings(max_examples=200, deadline=None)
@given(instances=st.integers(1, 6), order=st.randoms(use_true_random=False))
def test_instances_ticking_in_any_order_share_every_shard(instances, order) -> None:
    owner: dict[int, int] = {}  # the lease table: one holder per shard by construction
    for _ in range(3):
        ticking = list(range(instances))
        order.shuffle(ticking)
        for me in ticking:
            held = {s for s, o in owner.items() if o == me}
            room, give = plan(held, set(), set(), SHARDS, instances)
            for s in give:
                del owner[s]
            for s in candidates(set(range(SHARDS)) - set(owner), f"host:{me}:x", SHARDS)[:room]:
                owner[s] = me
    assert sorted(owner) == list(range(SHARDS))
    counts = [list(owner.values()).count(i) for i in range(instances)]
    assert max(counts) <= share(SHARDS, instances)


@given(held=st.integers(0, SHARDS), leaving=st.integers(0, SHARDS), live=st.integers(1, 20))
def test_an_instance_looks_again_exactly_while_off_its_share(held, leaving, live) -> None:
    assert off_share(held, leaving, SHARDS, live) == (leaving > 0 or held != share(SHARDS, live))


def test_candidates_start_where_the_instance_does() -> None:
    free = set(range(SHARDS))
    assert sorted(candidates(free, "host:1:a", SHARDS)) == sorted(free)
    assert candidates({3, 5}, "x", SHARDS) in ([3, 5], [5, 3])


def test_shard_of_is_stable_and_in_range() -> None:
    assert shard_of("webchat:a") == shard_of("webchat:a")
    assert {shard_of(f"telegram:{n}") for n in range(400)} == set(range(SHARDS))


def test_only_a_gone_process_of_this_host_counts_as_dead_at_once() -> None:
    gone = lambda pid: False  # noqa: E731
    assert dead_here("vm:123:abcdef:7", "vm", gone)
    assert not dead_here("vm:123:abcdef:7", "vm", lambda pid: True)
    assert not dead_here("other:123:abcdef:7", "vm", gone)
    for value in (None, "", "vm:7", "vm:x:abcdef:7", "vm:123:abcdef:"):
        assert not dead_here(value, "vm", gone)
    assert gone_here("vm:123:abcdef", "vm", gone) and not gone_here("vm:123:abcdef", "vm", lambda pid: True)


@settings(max_examples=200, deadline=None)
@given(host=st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True), pid=st.integers(1, 2**22),
       token=st.integers(1, 10**9), here=st.booleans(), running=st.booleans())
def test_a_holder_is_dead_here_exactly_when_of_this_host_and_its_pid_is_gone(host, pid, token, here, running) -> None:
    value = f"{host if here else host + 'x'}:{pid}:a1b2c3:{token}"
    assert dead_here(value, host, lambda p: running if p == pid else True) == (here and not running)


class Answering:
    """A pipeline that answers each taken event at once, through its store, with a reply naming itself."""

    def __init__(self, store: RedisStore, name: str, hold: bool = False) -> None:
        self.store, self.name, self.hold = store, name, hold
        self.taken: list[Any] = []
        self.answered: list[str] = []

    def take(self, event: Any) -> Deferred:
        self.taken.append(event)
        if self.hold:
            return Deferred()  # thinks forever: the instance "dies" with it in flight
        d = self.store.complete_inbound(event.id, [reply(event, self.name)])
        return d.addCallback(lambda ids: self.answered.extend([event.id] * len(ids)))


class Instance:
    def __init__(self, url: str, name: str, ttl: float, live: int, hold: bool = False,
                 running_pid: Any = lambda pid: True, alive: Any = lambda instance_id: succeed(True),
                 clock: Any = reactor, instances: Any = None) -> None:
        self.store = RedisStore(reactor, url, "t:", history=100)
        self.pipeline = Answering(self.store, name, hold)
        self.consumer = ShardConsumer(
            clock, self.store, lambda: RedisLeases(self.store.redis, self.store.prefix), self.pipeline,
            f"host:{name}:abc123", Timing.for_ttl(ttl),
            instances=instances or (lambda: succeed([f"host:{n}:other" for n in range(live - 1)])), block=0.2,
            running_pid=running_pid, alive=alive)

    def start(self) -> Deferred:
        d = self.store.startService()
        return d.addCallback(lambda _: self.consumer.startService())

    def die(self) -> Deferred:
        """Stop renewing and reading without giving anything back (as SIGKILL would)."""
        self.consumer.refusing = True
        return self.consumer.loop.stopService()


@pytest_twisted.async_yield_fixture
async def cluster(redis_server) -> Any:
    made: list[Instance] = []

    def make(name: str, ttl: float = 15.0, live: int = 1, hold: bool = False, **kw: Any) -> Instance:
        made.append(Instance(f"redis://127.0.0.1:{redis_server.port}/0", name, ttl, live, hold, **kw))
        return made[-1]

    yield make
    for instance in made:
        if instance.consumer.running:
            await instance.consumer.stopService()
        await instance.store.stopService()


def answered_in_order(store: RedisStore, sessions: dict[str, list[str]]) -> Deferred:
    """Each session's history: every event once as user, then its one reply, in recorded order."""
    def check(histories: list[list[dict]]) -> None:
        for (session, ids), history in zip(sessions.items(), histories):
            assert [m["event_id"] for m in history if m["role"] == "assistant"] == ids, session
    return gatherResults([store.history(s, 100) for s in sessions]).addCallback(check)


@pytest_twisted.inlineCallbacks
def test_two_instances_share_the_shards_and_answer_each_event_once_in_order(cluster) -> None:
    a, b = cluster("a", live=2), cluster("b", live=2)
    yield gatherResults([a.start(), b.start()])
    yield until(lambda: len(a.consumer.held) + len(b.consumer.held) == SHARDS, what="all shards held")
    assert len(a.consumer.held) == len(b.consumer.held) == SHARDS // 2
    sessions: dict[str, list[str]] = {f"webchat:{n}": [] for n in range(20)}
    for n in range(80):
        event = message(session=f"webchat:{n % 20}", text=f"m{n}")
        yield (a if n % 2 else b).store.record_inbound(event)  # received by either instance
        sessions[event.session_id].append(event.id)
    yield until(lambda: len(a.pipeline.answered) + len(b.pipeline.answered) == 80, what="80 answers")
    assert a.pipeline.answered and b.pipeline.answered
    assert sorted(a.pipeline.answered + b.pipeline.answered) == sorted(i for ids in sessions.values() for i in ids)
    for instance, other in ((a, b), (b, a)):  # a session is answered by its shard's holder only
        assert {shard_of(e.session_id) for e in instance.pipeline.taken} <= set(instance.consumer.held)
    yield answered_in_order(a.store, sessions)
    assert (yield a.store.pending_inbound()) == []
    assert (yield a.store.outbox_counts())["pending"] == 80
    entries = yield a.store.redis.execute_command("XLEN", a.store.stream_key(shard_of("webchat:0")))
    assert int(entries) == 0  # answered entries are acknowledged and deleted


@pytest_twisted.inlineCallbacks
def test_shards_move_to_a_new_instance_within_a_look_not_a_renew_period(cluster) -> None:
    clock, live = Clock(), ["host:a:abc123"]
    a = cluster("a", clock=clock, instances=lambda: succeed(list(live)))
    yield a.start()
    yield a.consumer.ready
    assert len(a.consumer.held) == SHARDS
    live.append("host:b:abc123")
    b = cluster("b", clock=clock, instances=lambda: succeed(list(live)))
    yield b.start()
    yield b.consumer.ready
    assert b.consumer.held == {}  # every shard still a's
    assert a.consumer.timing.renew_every == 5.0
    clock.advance(1.0)  # a looks: over its share, it ticks and gives half back
    yield until(lambda: len(a.consumer.held) == SHARDS // 2 and not a.consumer.loop.busy, what="a gave half back")
    clock.advance(1.0)  # b looks: under its share, it ticks and takes them
    yield until(lambda: len(b.consumer.held) == SHARDS // 2, what="b took its share")
    assert set(a.consumer.held).isdisjoint(b.consumer.held)


@pytest_twisted.inlineCallbacks
def test_a_dead_instances_events_are_reclaimed_and_answered_once(cluster) -> None:
    dying = cluster("dying", ttl=1.0, hold=True)
    yield dying.start()
    yield until(lambda: len(dying.consumer.held) == SHARDS, what="the first instance holds every shard")
    sessions: dict[str, list[str]] = {f"telegram:{n}": [] for n in range(4)}
    for n in range(12):
        event = message(session=f"telegram:{n % 4}", text=f"m{n}")
        yield dying.store.record_inbound(event)
        sessions[event.session_id].append(event.id)
    yield until(lambda: len(dying.pipeline.taken) == 12, what="the first instance read every event")
    yield dying.die()
    reclaimed = metrics.inbound_reclaimed._value.get()

    heir = cluster("heir", ttl=1.0)
    yield heir.start()
    yield until(lambda: len(heir.pipeline.answered) == 12, what="the heir answered every event", timeout=10)
    assert metrics.inbound_reclaimed._value.get() - reclaimed == 12
    assert sorted(heir.pipeline.answered) == sorted(e.id for e in dying.pipeline.taken)
    yield answered_in_order(heir.store, sessions)

    # The dead instance wakes and answers late: the event is done, nothing is written.
    late = dying.pipeline.taken[0]
    assert (yield dying.store.complete_inbound(late.id, [reply(late, "late", n=1)])) == []
    yield answered_in_order(heir.store, sessions)
    assert (yield heir.store.outbox_counts())["pending"] == 12


@pytest_twisted.inlineCallbacks
def test_a_reply_under_a_stale_fencing_token_is_refused(cluster) -> None:
    one = cluster("one")
    yield one.store.startService()
    event = message(session="webchat:x")
    yield one.store.record_inbound(event)
    yield one.store.redis.set(f"t:fence:shard:{shard_of(event.session_id)}", "2")  # the shard passed on
    fenced = metrics.inbound_fenced._value.get()
    one.store.fences[event.id] = "1"
    assert (yield one.store.complete_inbound(event.id, [reply(event)])) == []
    assert (yield one.store.inbound_state(event.id)) == "received"
    assert metrics.inbound_fenced._value.get() == fenced + 1
    one.store.fences[event.id] = "1"
    yield one.store.fail_inbound(event.id, "stale")
    assert (yield one.store.inbound_state(event.id)) == "received"
    one.store.fences[event.id] = "2"  # the current holder's token
    assert (yield one.store.complete_inbound(event.id, [reply(event)])) != []
    assert (yield one.store.inbound_state(event.id)) == "done"


@pytest_twisted.inlineCallbacks
def test_a_crashed_predecessor_on_this_host_is_taken_over_without_waiting_for_its_ttl(cluster) -> None:
    restarted = cluster("7", running_pid=lambda pid: pid != 424242)
    yield restarted.store.startService()
    store, leases = restarted.store, RedisLeases(restarted.store.redis, "t:")
    dead = "host:424242:dead00"
    for shard in range(SHARDS):
        assert (yield leases.acquire(lease_name(shard), dead, 600)) == 1
        yield store.claim_shard(shard, dead)
    events = [message(session=f"webchat:{n}", text=f"m{n}") for n in range(6)]
    for event in events:
        yield store.record_inbound(event)
    read = yield store.read_shards(dead, list(range(SHARDS)), 100, 0.1)
    assert len(read) == 6  # read by the predecessor, never answered
    restarted.consumer.startService()
    yield until(lambda: len(restarted.pipeline.answered) == 6, what="the restarted instance answered", timeout=5)
    assert sorted(restarted.pipeline.answered) == sorted(e.id for e in events)
    assert (yield leases.holder(lease_name(0))) == ("host:7:abc123", 2)


@pytest_twisted.inlineCallbacks
def test_events_left_received_by_a_version_before_streams_are_answered(cluster) -> None:
    upgraded = cluster("new")
    yield upgraded.store.startService()
    events = [message(session=f"webchat:{n}", text=f"old {n}") for n in range(3)]
    for event in events:
        yield upgraded.store.record_inbound(event)
        stream = upgraded.store.stream_key(shard_of(event.session_id))
        yield upgraded.store.redis.execute_command("DEL", stream)  # as the old version wrote it: no entry
        yield upgraded.store.redis.hdel(f"t:in:{event.id}", ["xid", "shard"])
    upgraded.consumer.startService()
    yield until(lambda: len(upgraded.pipeline.answered) == 3, what="the old events answered", timeout=5)
    assert sorted(upgraded.pipeline.answered) == sorted(e.id for e in events)


@pytest_twisted.inlineCallbacks
def test_an_entry_a_stale_reader_took_is_swept_to_the_holder_after_a_ttl(cluster) -> None:
    holder = cluster("holder", ttl=1.0)
    yield holder.start()
    yield until(lambda: len(holder.consumer.held) == SHARDS, what="every shard held")
    holder.consumer.refusing = True  # park its reader, so the stale one reads first
    holder.consumer._wake()
    yield until(lambda: holder.consumer._wakeup is not None, what="the reader parked")
    event = message(session="webchat:stale", text="read by a reader that lost the shard")
    yield holder.store.record_inbound(event)
    (read,) = yield holder.store.read_shards("host:gone:ffffff", list(range(SHARDS)), 10, 0.1)
    assert read[1].id == event.id
    holder.consumer.refusing = False
    holder.consumer._wake()
    yield holder.consumer._sweep()
    assert holder.pipeline.answered == []  # pending for less than a TTL: maybe still being answered
    yield until(lambda: holder.pipeline.answered == [event.id], what="swept and answered", timeout=5)


@pytest_twisted.inlineCallbacks
def test_shards_of_an_instance_whose_key_is_gone_are_taken_over_at_the_second_look(cluster) -> None:
    ghost = "host:ghost:000000"
    heir = cluster("heir", ttl=1.0, alive=lambda instance_id: succeed(instance_id != ghost))
    yield heir.store.startService()
    leases = RedisLeases(heir.store.redis, "t:")
    for shard in range(SHARDS):
        yield leases.acquire(lease_name(shard), ghost, 600)  # would hold for ten minutes
    heir.consumer.startService()
    yield heir.consumer.ready
    assert heir.consumer.held == {}  # one look: maybe an instance not registered yet
    yield until(lambda: len(heir.consumer.held) == SHARDS, what="taken over at the next tick", timeout=5)
    assert (yield leases.holder(lease_name(3))) == ("host:heir:abc123", 2)
