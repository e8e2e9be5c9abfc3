"""
Admission that tracks capacity: the pure decision (hypothesis), the
pipeline on a clock (the wait bound follows the measured handling time;
shedding shows and ends), and ``busy`` on a real gateway connection, per
session and overall, with nothing recorded for what was refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport

from openclaw import admission, metrics
from openclaw.admission import Limits, Load, estimated_wait, refusal, smoothed, wait_bound
from openclaw.agent.base import BrainReply
from openclaw.config import LanesConfig
from openclaw.events import MESSAGE_RECEIVED, Event
from openclaw.gateway.protocol import BUSY_BURST, BUSY_HOLD, BUSY_RATE, GatewayProtocol
from openclaw.pipeline import SHED_WINDOW, Busy, Pipeline
from openclaw.runtime import Runtime
from tests import wsclient
from tests.daemon import RunningDaemon, daemon_config
from tests.strategies import admission_limits, admission_loads
from tests.waiting import step_clock

@given(admission_loads(), admission_limits())
def test_an_admitted_message_is_within_every_bound(load: Load, limits: Limits) -> None:
    if refusal(load, limits) is None:
        assert load.session_pending < limits.max_queue and load.pending < limits.max_pending
        assert limits.max_wait == 0 or estimated_wait(load) <= wait_bound(load, limits)
    else:
        assert (load.session_pending >= limits.max_queue or load.pending >= limits.max_pending
                or estimated_wait(load) > wait_bound(load, limits) > 0)


@given(admission_loads(), admission_limits())
def test_the_wait_bound_is_max_wait_or_wait_answers_answers_whichever_is_longer(load: Load, limits: Limits) -> None:
    bound = wait_bound(load, limits)
    if limits.max_wait == 0:
        assert bound == 0
    else:
        assert bound >= limits.max_wait and bound >= limits.wait_answers * load.handling
        assert bound in (limits.max_wait, limits.wait_answers * load.handling)


@given(admission_loads(), admission_limits(), st.integers(0, 10), st.integers(0, 100), st.floats(0, 1))
def test_less_load_is_never_refused_where_more_was_admitted(load: Load, limits: Limits, fewer_mine: int,
                                                            fewer: int, faster: float) -> None:
    lighter = Load(max(0, load.session_pending - fewer_mine), max(0, load.pending - fewer),
                   load.handling * faster, load.spacing * faster, load.cluster_wait * faster)
    if refusal(load, limits) is None:
        assert refusal(lighter, limits) is None


@given(st.floats(0, 1e6), st.floats(0, 1e6), admission_limits())
def test_with_nothing_pending_a_message_is_always_admitted(handling: float, spacing: float, limits: Limits) -> None:
    """A brain slower than max_wait still answers one message at a time: nothing waits for it."""
    assert refusal(Load(0, 0, handling, spacing), limits) is None


@given(st.floats(0.001, 100), st.lists(st.floats(0.001, 100), min_size=1, max_size=50))
def test_the_moving_average_stays_within_its_samples(first: float, samples: list[float]) -> None:
    average = smoothed(0.0, first)
    assert average == first
    for sample in samples:
        average = smoothed(average, sample)
    assert min([first, *samples]) - 1e-9 <= average <= max([first, *samples]) + 1e-9


# The pipeline on a clock


class Store:
    """The store calls the pipeline makes, answered at once; what was recorded is kept."""

    def __init__(self) -> None:
        self.recorded: list[str] = []
        self.completed: list[str] = []

    def record_inbound(self, event: Event) -> Deferred:
        self.recorded.append(event.id)
        return succeed((event.id, False))

    def pending_inbound(self) -> Deferred:
        return succeed([])

    def complete_inbound(self, event_id: str, replies: list) -> Deferred:
        self.completed.append(event_id)
        return succeed([r.id for r in replies])


class SlowBrain:
    """Answers each message ``seconds`` later on the clock."""

    uses_history = False

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def respond(self, request: Any) -> Deferred:
        return deferLater(self.clock, self.seconds, lambda: BrainReply(text="ok", provider="slow"))


class Outbox:
    def kick(self) -> Deferred:
        return succeed(None)

    def remember_task(self, reply_to: str, task_id: str) -> None:
        pass


def event(session: str, text: str = "hi") -> Event:
    return Event(type=MESSAGE_RECEIVED, source="webchat", session_id=session, timestamp=0.0, payload={"text": text})


def refused_count(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_admission_refused_total", {"reason": reason}) or 0.0


def test_the_wait_bound_follows_the_measured_handling_time_and_shedding_ends() -> None:
    clock = Clock()
    store = Store()
    pipeline = Pipeline(Runtime(clock), store, SlowBrain(clock, 2.0), Outbox(),
                        lanes=LanesConfig(max_concurrent=1, max_queue=100, max_pending=100, max_wait=3.0,
                                          wait_answers=1))
    pipeline.startService()
    try:
        pipeline.receive(event("webchat:a"))
        clock.advance(2.0)
        assert pipeline.handling == pipeline.spacing == 2.0 and pipeline.pending == 0
        before = refused_count(admission.WAIT)
        pipeline.receive(event("webchat:a"))  # nothing pending: no wait
        pipeline.receive(event("webchat:a"))  # waits one turn: 2 s
        assert pipeline.status()["pending"] == 2 and not pipeline.problems()
        third = event("webchat:a")
        for refused in (third, event("webchat:b")):  # 2 pending, one answer per 2 s: 4 s, past max_wait
            try:
                pipeline.receive(refused)
            except Busy as e:
                assert e.reason == admission.WAIT
            else:
                raise AssertionError("admitted past max_wait")
        assert third.id not in store.recorded and len(store.recorded) == 3
        assert refused_count(admission.WAIT) == before + 2
        assert pipeline.status()["shedding"] and "shedding load: 2 messages refused" in pipeline.problems()[0]
        assert metrics.REGISTRY.get_sample_value("openclaw_shedding") == 1
        clock.advance(2.0)
        pipeline.receive(event("webchat:b"))  # one answered: 2 s of wait again
        step_clock(clock, 4.0)
        assert store.completed == store.recorded and pipeline.pending == 0
        clock.advance(SHED_WINDOW)
        assert not pipeline.problems() and not pipeline.status()["shedding"]
        assert metrics.REGISTRY.get_sample_value("openclaw_shedding") == 0
    finally:
        pipeline.stopService()


def test_a_slow_model_still_queues_wait_answers_messages_under_the_default_max_wait() -> None:
    """The defaults (max_wait under a second, 4 answers) with a 5 s model: a sender may queue four, not one."""
    clock = Clock()
    store = Store()
    defaults = LanesConfig()
    pipeline = Pipeline(Runtime(clock), store, SlowBrain(clock, 5.0), Outbox(),
                        lanes=LanesConfig(max_concurrent=1, max_wait=defaults.max_wait,
                                          wait_answers=defaults.wait_answers))
    pipeline.startService()
    try:
        pipeline.receive(event("webchat:a"))
        clock.advance(5.0)
        assert pipeline.handling == 5.0
        admitted = 0
        while True:
            try:
                pipeline.receive(event("webchat:a"))
            except Busy as e:
                assert e.reason == admission.WAIT
                break
            admitted += 1
        assert admitted == defaults.wait_answers + 1  # one in hand, four waiting: 20 s, the bound
        assert pipeline.status()["wait_bound"] == 5.0 * defaults.wait_answers
        step_clock(clock, 5.0 * admitted)
        assert store.completed == store.recorded and pipeline.pending == 0
    finally:
        pipeline.stopService()


def holds() -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_gateway_busy_holds_total") or 0.0


def test_a_connection_refused_past_its_busy_rate_is_not_read_for_a_moment_whatever_else_resumes_it() -> None:
    clock, conn = Clock(), GatewayProtocol()
    conn.transport = StringTransport()
    before = holds()
    for _ in range(BUSY_BURST):  # an occasional refusal: the connection keeps being read
        conn.hold_after_busy(clock)
    assert conn.transport.producerState == "producing" and holds() == before
    conn.hold_after_busy(clock)
    conn.hold_after_busy(clock)  # more refusals from the same read neither count nor extend it
    assert conn.transport.producerState == "paused" and holds() == before + 1
    conn.resumeProducing()  # the send buffer drained: still held
    clock.advance(BUSY_HOLD * 0.99)
    assert conn.transport.producerState == "paused"
    clock.advance(BUSY_HOLD * 0.01)
    assert conn.transport.producerState == "producing" and conn.busy_hold is None
    for _ in range(int(BUSY_RATE * BUSY_HOLD)):  # the hold earned that many refusals back
        conn.hold_after_busy(clock)
    assert conn.transport.producerState == "producing"
    conn.paused = True  # backpressure outlasting a hold keeps the connection unread
    conn.transport.pauseProducing()
    conn.hold_after_busy(clock)
    clock.advance(BUSY_HOLD)
    assert conn.transport.producerState == "paused"
    conn.resumeProducing()
    assert conn.transport.producerState == "producing"


# A real gateway connection


@pytest_twisted.inlineCallbacks
def test_chat_send_is_busy_past_the_session_and_overall_bounds_and_nothing_is_recorded(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path), daemon_config(lanes={"max_queue": 2, "max_pending": 3, "max_wait": 0}))
    daemon.service.getServiceNamed("pipeline").lanes.pause()  # nothing is answered: the bounds fill
    store = daemon.service.getServiceNamed("store")
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    try:
        session_before, overall_before = refused_count(admission.SESSION), refused_count(admission.OVERALL)
        holds_before = holds()
        for text in ("a1", "a2"):
            assert (yield client.request("chat.send", {"text": text, "session": "webchat:a"}))["ok"]
        third = yield client.request("chat.send", {"text": "a3", "session": "webchat:a"})
        assert third["error"]["code"] == "busy" and "this session" in third["error"]["message"]
        assert (yield client.request("chat.send", {"text": "b1", "session": "webchat:b"}))["ok"]
        fourth = yield client.request("chat.send", {"text": "c1", "session": "webchat:c"})
        assert fourth["error"]["code"] == "busy" and "the daemon has more messages" in fourth["error"]["message"]
        assert (refused_count(admission.SESSION), refused_count(admission.OVERALL)) == (
            session_before + 1, overall_before + 1)
        assert holds() == holds_before  # two refusals are within a connection's busy burst: it is read on
        assert [m["text"] for m in (yield store.history("webchat:a", 10))] == ["a1", "a2"]
        assert (yield store.history("webchat:c", 10)) == []
        assert len((yield store.pending_inbound())) == 3
        code, _, body = yield daemon.get("/health")
        health = json.loads(body)
        assert code == 503 and health["admission"]["shedding"] and health["admission"]["pending"] == 3
        assert any(p.startswith("shedding load") for p in health["problems"])
        code, _, _ = yield daemon.get("/readyz")
        assert code == 200  # shedding is not a reason to withdraw readiness
    finally:
        yield client.close()
        yield daemon.stop()
