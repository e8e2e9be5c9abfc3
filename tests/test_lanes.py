"""Lanes: order within a session, concurrency across sessions, priorities, overflow, idle collection."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from openclaw import metrics
from openclaw.lanes import CHAT, HEARTBEAT, SYSTEM, Lanes


class Handler:
    """Records what started and lets the test finish each item."""

    def __init__(self) -> None:
        self.started: list[tuple[str, object]] = []
        self.pending: dict[object, Deferred] = {}

    def __call__(self, session_id: str, item: object) -> Deferred:
        self.started.append((session_id, item))
        d = self.pending[item] = Deferred()
        return d

    def finish(self, item: object) -> None:
        self.pending.pop(item).callback(None)


def test_one_at_a_time_in_order_within_a_session() -> None:
    handler = Handler()
    lanes = Lanes(Clock(), handler, max_concurrent=4)
    for n in range(3):
        assert lanes.submit("s", n)
    assert handler.started == [("s", 0)]
    handler.finish(0)
    assert handler.started[-1] == ("s", 1)
    handler.finish(1)
    handler.finish(2)
    assert [item for _, item in handler.started] == [0, 1, 2]
    assert lanes.running() == 0 and lanes.depth() == 0


def test_sessions_run_concurrently_up_to_the_limit() -> None:
    handler = Handler()
    lanes = Lanes(Clock(), handler, max_concurrent=2)
    for sid in "abc":
        lanes.submit(sid, sid)
    assert [s for s, _ in handler.started] == ["a", "b"]
    assert lanes.running() == 2 and lanes.depth() == 1
    handler.finish("b")
    assert handler.started[-1] == ("c", "c")


def test_chat_goes_before_system_before_heartbeat() -> None:
    handler = Handler()
    lanes = Lanes(Clock(), handler, max_concurrent=1)
    lanes.submit("busy", "first")
    lanes.submit("beat", "hb", HEARTBEAT)
    lanes.submit("sys", "sys", SYSTEM)
    lanes.submit("chat", "chat", CHAT)
    handler.finish("first")
    handler.finish("chat")
    handler.finish("sys")
    assert [item for _, item in handler.started] == ["first", "chat", "sys", "hb"]


def test_overflow_is_refused_not_dropped() -> None:
    handler = Handler()
    overflows = metrics.REGISTRY.get_sample_value("openclaw_lane_overflows_total")
    lanes = Lanes(Clock(), handler, max_concurrent=1, max_queue=2)
    assert lanes.submit("s", 0)  # runs at once
    assert lanes.submit("s", 1) and lanes.submit("s", 2)
    assert not lanes.submit("s", 3)
    assert metrics.REGISTRY.get_sample_value("openclaw_lane_overflows_total") == overflows + 1
    assert lanes.submit("other", "x") is True  # other sessions are unaffected
    handler.finish(0)
    assert lanes.submit("s", 3)


def test_a_failing_handler_does_not_stop_the_lane() -> None:
    seen = []

    def handler(session_id, item):
        seen.append(item)
        if item == "bad":
            raise RuntimeError("boom")

    lanes = Lanes(Clock(), handler)
    lanes.submit("s", "bad")
    lanes.submit("s", "good")
    assert seen == ["bad", "good"]


def test_idle_lanes_are_collected_and_recreated() -> None:
    clock = Clock()
    handler = Handler()
    lanes = Lanes(clock, handler, idle_after=100)
    lanes.submit("a", 1)
    lanes.submit("b", 2)
    handler.finish(1)
    clock.advance(50)
    handler.finish(2)
    assert len(lanes) == 2 and metrics.REGISTRY.get_sample_value("openclaw_active_sessions") == 2
    clock.advance(50)  # a idle for 100 s, b for 50 s
    assert len(lanes) == 1
    clock.advance(50)
    assert len(lanes) == 0 and metrics.REGISTRY.get_sample_value("openclaw_active_sessions") == 0
    lanes.submit("a", 3)
    assert len(lanes) == 1 and handler.started[-1] == ("a", 3)
    handler.finish(3)
    lanes.stop()
    assert not clock.getDelayedCalls()


def test_busy_lanes_are_not_collected() -> None:
    clock = Clock()
    handler = Handler()
    lanes = Lanes(clock, handler, idle_after=10)
    lanes.submit("a", 1)
    clock.advance(1000)
    assert len(lanes) == 1
    handler.finish(1)
    clock.advance(10)
    assert len(lanes) == 0


def test_until_idle_waits_for_running_work() -> None:
    handler = Handler()
    lanes = Lanes(Clock(), handler)
    assert lanes.until_idle().called
    lanes.submit("a", 1)
    idle = lanes.until_idle()
    assert not idle.called
    handler.finish(1)
    assert idle.called


@settings(max_examples=100)
@given(
    st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from([CHAT, SYSTEM, HEARTBEAT])), min_size=1, max_size=30),
    st.integers(1, 3),
    st.randoms(use_true_random=False),
)
def test_order_per_session_and_the_concurrency_bound_hold(submissions, limit, random) -> None:
    handler = Handler()
    lanes = Lanes(Clock(), handler, max_concurrent=limit, max_queue=1000)
    for n, (sid, priority) in enumerate(submissions):
        assert lanes.submit(sid, (sid, n), priority)
        assert lanes.running() <= limit
        if handler.pending and random.random() < 0.5:
            handler.finish(random.choice(sorted(handler.pending)))
    while handler.pending:
        assert len(handler.pending) <= limit
        assert len({item[0] for item in handler.pending}) == len(handler.pending)  # one per session
        handler.finish(random.choice(sorted(handler.pending)))
    assert len(handler.started) == len(submissions)
    for sid in "abcd":
        ran = [n for s, (_, n) in handler.started if s == sid]
        assert ran == sorted(ran)


def test_pause_lets_running_work_finish_and_starts_nothing_new() -> None:
    handler = Handler()
    lanes = Lanes(Clock(), handler, max_concurrent=1)
    lanes.submit("a", 1)
    lanes.submit("b", 2)
    lanes.pause()
    idle = lanes.until_idle()
    assert not idle.called
    handler.finish(1)
    assert idle.called and handler.started == [("a", 1)] and lanes.depth() == 1


def test_force_ignores_the_bound_for_replays() -> None:
    handler = Handler()
    lanes = Lanes(Clock(), handler, max_concurrent=1, max_queue=1)
    lanes.submit("s", 0)
    lanes.submit("s", 1)
    assert not lanes.submit("s", 2) and lanes.submit("t", 0)
    assert lanes.submit("s", 2, force=True)
    assert lanes.depth() == 3
