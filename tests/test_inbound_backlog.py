"""
The cluster's inbound backlog: the counts the Redis store keeps in the
scripts that change them (a real Redis), the watch's estimate on a
``Clock``, and admission refusing on it.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from openclaw import admission, metrics
from openclaw.admission import Limits, Load, estimated_wait, refusal
from openclaw.inbound_backlog import POLL, BacklogWatch
from openclaw.store.redis import RedisStore
from tests.store_contract import message, reply


class Counts:
    """``inbound_backlog`` as a store answers it: what the test sets."""

    def __init__(self) -> None:
        self.pending, self.answered = 0, 0

    def inbound_backlog(self) -> Any:
        return succeed((self.pending, self.answered))


def test_the_wait_is_the_backlog_times_the_time_between_answers() -> None:
    clock, counts = Clock(), Counts()
    watch = BacklogWatch(clock, counts)
    watch.startService()
    try:
        assert watch.wait() == 0.0
        counts.pending = 500  # a backlog appears: no answer seen yet, no pace to go by
        clock.advance(POLL)
        assert watch.pending == 500 and watch.wait() == 0.0
        for _ in range(40):  # then 50 answers per poll while it stays: 2 ms apart
            counts.answered += 50
            clock.advance(POLL)
        assert abs(watch.spacing - POLL / 50) < 1e-9 and abs(watch.wait() - 500 * POLL / 50) < 1e-6
        assert watch.status() == {"pending": 500, "spacing": 0.002, "estimated_wait": 1.0}
        assert metrics.REGISTRY.get_sample_value("openclaw_inbound_backlog") == 500
        counts.pending = 0  # drained
        clock.advance(POLL)
        assert watch.wait() == 0.0
        clock.advance(60.0)  # idle time is not time between answers
        counts.pending, counts.answered = 10, counts.answered + 1
        clock.advance(POLL)
        assert watch.spacing < 0.01
    finally:
        watch.stopService()


class Failing:
    """A store whose Redis is down: every read fails, until it is back."""

    def __init__(self) -> None:
        self.down, self.counts = False, Counts()

    def inbound_backlog(self) -> Any:
        return fail(ConnectionError("Redis is down")) if self.down else self.counts.inbound_backlog()


def test_a_failing_store_neither_floods_the_log_nor_refuses_on_a_stale_backlog() -> None:
    clock, store = Clock(), Failing()
    watch = BacklogWatch(clock, store)
    failures = []
    watch.startService()
    try:
        store.counts.pending = 500
        for _ in range(5):
            store.counts.answered += 50
            clock.advance(POLL)
        assert watch.wait() > 0
        store.down = True
        for _ in range(600):  # a minute of polls against a dead Redis
            watch._poll().addErrback(failures.append)
            clock.advance(POLL)
        assert failures == [] and watch.wait() == 0.0
        assert metrics.REGISTRY.get_sample_value("openclaw_inbound_backlog") == 0
        store.down = False
        clock.advance(POLL)
        assert watch.pending == 500
    finally:
        watch.stopService()


@given(st.integers(0, 600), st.floats(0, 100), st.floats(0.01, 10))
def test_a_cluster_backlog_past_the_wait_bound_is_refused_even_with_nothing_pending_here(
        backlog: int, cluster_wait: float, max_wait: float) -> None:
    limits = Limits(max_queue=100, max_pending=1000, max_wait=max_wait, wait_answers=4)
    load = Load(session_pending=0, pending=0, handling=0.0, spacing=0.0, cluster_wait=cluster_wait)
    assert estimated_wait(load) == cluster_wait
    assert (refusal(load, limits) == admission.WAIT) == (cluster_wait > max_wait)


@pytest_twisted.inlineCallbacks
def test_the_redis_store_counts_what_every_instance_received_and_answered(redis_server) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    a, b = RedisStore(reactor, url, "t:", history=100), RedisStore(reactor, url, "t:", history=100)
    yield a.startService()
    yield b.startService()
    try:
        assert (yield a.inbound_backlog()) == (0, 0)
        events = [message(session=f"webchat:{n}", text=f"m{n}") for n in range(3)]
        for n, event in enumerate(events):
            yield (a if n % 2 else b).record_inbound(event)  # received by either instance
        yield a.record_inbound(events[0])  # a duplicate is not counted twice
        assert (yield b.inbound_backlog()) == (3, 0)
        yield b.complete_inbound(events[0].id, [reply(events[0], "b")])
        yield a.complete_inbound(events[0].id, [reply(events[0], "a")])  # answered already: not counted
        yield a.fail_inbound(events[1].id, "the brain failed")  # given up is answered too: not waiting
        assert (yield a.inbound_backlog()) == (1, 2)
    finally:
        yield a.stopService()
        yield b.stopService()
