"""
The periodic-service primitive on a ``task.Clock``: a Hypothesis state
machine (after Magic-Folder's ``test_util_twisted.py``) and a few examples.
"""

from __future__ import annotations

from typing import Any

import eliot
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from openclaw.periodic import PeriodicService
from tests import strategies
from tests.waiting import step_clock


class Boom(Exception):
    pass


class PeriodicMachine(RuleBasedStateMachine):
    """
    Drives one ``PeriodicService`` and keeps a model of what it must do:
    ``due`` (when the next timed call must start), ``requested`` (a
    ``call_soon`` not yet served) and the call in progress.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.clock.advance(1000)
        self.logged: list[dict] = []
        eliot.add_destinations(self.logged.append)
        self.mode = "quick"  # how the next call answers: quick, slow, raise, fail
        self.calls = 0
        self.failed = 0
        self.pending: Deferred | None = None  # the slow call in progress
        self.started = self.stopped = False
        self.requested = False
        self.due: float | None = None
        self.since = self.clock.seconds()
        self.requests: list[tuple[int, list]] = []  # (calls made before the request, what its Deferred fired with)
        self.stops: list[Deferred] = []
        self.violations: list[str] = []

    @initialize(interval=strategies.intervals(), first=st.sampled_from([None, 0.0, 3.0]), gather=st.booleans())
    def build(self, interval: float, first: float | None, gather: bool) -> None:
        self.interval, self.first, self.gather = interval, first, gather
        self.service = PeriodicService(self.clock, interval, self.call, name="machine", first=first,
                                       gather_turn=gather)

    # The function the service calls

    def call(self) -> Any:
        # The service catches what its call raises: violations are kept for
        # an invariant, and the call then hangs so that the loop stops.
        if self.pending is not None:
            self.violations.append("two calls at once")
        if self.stopped:
            self.violations.append("a call after stop")
        if self.requested:
            self.requested = False
        elif self.clock.seconds() != self.due:
            self.violations.append(f"a call at {self.clock.seconds()} neither requested nor due (due {self.due})")
        if self.violations:
            return Deferred()
        self.due = None
        self.calls += 1
        n, mode = self.calls, self.mode
        if mode == "slow":
            self.pending = Deferred()
            return self.pending.addCallback(lambda _: n)
        self.ended()
        if mode == "raise":
            self.failed += 1
            raise Boom(n)
        if mode == "fail":
            self.failed += 1
            return fail(Boom(n))
        return succeed(n)

    def ended(self) -> None:
        """What the model expects once a call is over: the next one is requested, or one interval on."""
        self.since = self.clock.seconds()
        if self.started and not self.stopped and not self.requested and self.interval > 0:
            self.due = self.since + self.interval

    # Rules

    @rule(mode=st.sampled_from(["quick", "slow", "raise", "fail"]))
    def next_call_answers(self, mode: str) -> None:
        self.mode = mode

    @precondition(lambda self: not self.started)
    @rule()
    def start(self) -> None:
        self.started, self.stopped = True, False
        self.since = self.clock.seconds()
        if self.pending is None:  # else the running call's end schedules the next
            if self.first == 0:
                self.requested = True
            else:
                delay = self.interval if self.first is None else self.first
                self.due = self.since + delay if delay > 0 else None
        self.service.startService()

    @precondition(lambda self: self.started)
    @rule()
    def stop(self) -> None:
        self.started, self.stopped = False, True
        self.requested, self.due = False, None
        waiting = [fired for calls_before, fired in self.requests if not fired and self.calls == calls_before]
        d = self.service.stopService()
        assert all(fired == [None] for fired in waiting), "requests not answered at stop"
        if self.pending is None:
            assert d.called
        else:
            assert not d.called, "stop did not wait for the running call"
            self.stops.append(d)

    @rule()
    def call_soon(self) -> None:
        fired: list = []
        calls, idle = self.calls, self.pending is None
        if not self.stopped:
            self.requested = True
        self.service.call_soon().addCallback(fired.append)
        if self.stopped:
            assert fired == [None]
            return
        self.requests.append((calls, fired))
        if idle and not self.gather:
            assert self.calls == calls + 1, "an idle service did not call at once"

    @precondition(lambda self: self.pending is not None)
    @rule(fails=st.booleans())
    def finish(self, fails: bool) -> None:
        pending, self.pending = self.pending, None
        self.ended()
        if fails:
            self.failed += 1
            pending.errback(Boom())
        else:
            pending.callback(None)
        assert all(d.called for d in self.stops), "stop did not fire when the call ended"

    @rule(seconds=strategies.clock_steps())
    def advance(self, seconds: float) -> None:
        step_clock(self.clock, seconds)

    @precondition(lambda self: self.started and self.pending is None)
    @rule(interval=strategies.intervals())
    def set_interval(self, interval: float) -> None:
        self.interval = interval
        soon = self.requested and self.gather
        if not soon:
            self.due = max(self.clock.seconds(), self.since + interval) if interval > 0 else None
        self.service.set_interval(interval)

    # Invariants

    @invariant()
    def no_violation_seen_by_the_call(self) -> None:
        assert not self.violations, self.violations

    @invariant()
    def the_timer_is_the_model_s(self) -> None:
        assert self.service.next_call() == self.due
        assert self.service.busy == (self.pending is not None)

    @invariant()
    def a_request_is_never_forgotten(self) -> None:
        if self.requested and self.pending is None:
            assert self.gather and any(c.getTime() == self.clock.seconds() for c in self.clock.getDelayedCalls())

    @invariant()
    def each_request_is_served_by_the_next_call_to_start(self) -> None:
        for calls_before, fired in self.requests:
            if fired and fired != [None]:
                assert fired[0] == calls_before + 1, "served by another call than the next one"

    @invariant()
    def failures_are_logged(self) -> None:
        logged = [m for m in self.logged if m.get("message_type") == "openclaw:periodic:failed"]
        assert len(logged) == self.failed and all(m["service"] == "machine" for m in logged)

    def teardown(self) -> None:
        eliot.remove_destination(self.logged.append)


TestPeriodicMachine = PeriodicMachine.TestCase
TestPeriodicMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


# Examples


def test_the_interval_runs_from_the_end_of_a_call() -> None:
    clock, slow = Clock(), Deferred()
    starts: list[float] = []
    answers = [slow, succeed(None)]

    def call() -> Deferred:
        starts.append(clock.seconds())
        return answers.pop(0) if answers else succeed(None)

    service = PeriodicService(clock, 10.0, call)
    service.startService()
    clock.advance(10)
    clock.advance(25)  # the first call takes 25 s: nothing else starts meanwhile
    slow.callback(None)
    assert service.next_call() == 45.0
    clock.advance(10)
    assert starts == [10.0, 45.0]


def test_requests_during_a_call_coalesce_into_one_more_call() -> None:
    clock, slow = Clock(), Deferred()
    results = iter([slow, succeed("second")])
    calls: list[float] = []
    service = PeriodicService(clock, 60.0, lambda: (calls.append(clock.seconds()), next(results))[1])
    service.startService()
    first = service.call_soon()
    during = [service.call_soon() for _ in range(5)]
    assert len(calls) == 1 and not any(d.called for d in during)
    slow.callback("first")
    assert first.result == "first" and [d.result for d in during] == ["second"] * 5 and len(calls) == 2


def test_gather_turn_shares_one_call_among_the_requests_of_a_turn() -> None:
    clock, calls = Clock(), []
    service = PeriodicService(clock, 0, lambda: calls.append(1) or len(calls), gather_turn=True)
    ds = [service.call_soon() for _ in range(3)]
    assert calls == []
    clock.advance(0)
    assert calls == [1] and [d.result for d in ds] == [1, 1, 1]


def test_a_failing_call_is_logged_and_the_loop_goes_on() -> None:
    clock, calls = Clock(), []

    def call() -> None:
        calls.append(clock.seconds())
        raise Boom("once")

    service = PeriodicService(clock, 5.0, call, name="boom", first=0)
    logged: list[dict] = []
    eliot.add_destinations(logged.append)
    try:
        service.startService()
        clock.advance(5)
    finally:
        eliot.remove_destination(logged.append)
    assert calls == [0.0, 5.0]
    assert [(m["service"], m["log_level"]) for m in logged if m.get("message_type") == "openclaw:periodic:failed"] \
        == [("boom", "error")] * 2


def test_stop_waits_for_the_call_in_progress_and_answers_waiting_requests() -> None:
    clock, slow = Clock(), Deferred()
    service = PeriodicService(clock, 1.0, lambda: slow, first=0)
    service.startService()
    waiting = service.call_soon()
    stopped = service.stopService()
    assert waiting.result is None and not stopped.called
    slow.callback("done")
    assert stopped.result == "done" and clock.getDelayedCalls() == []
    assert service.call_soon().result is None  # after stop: nothing is called


def test_set_interval_reschedules_from_the_end_of_the_last_call() -> None:
    clock = Clock()
    service = PeriodicService(clock, 100.0, lambda: None)
    service.startService()
    clock.advance(30)
    service.set_interval(50.0)
    assert service.next_call() == 50.0
    service.set_interval(10.0)  # already past: at once
    assert service.next_call() == 30.0
    service.set_interval(0)
    assert service.next_call() is None


@pytest.mark.parametrize("first,expected", [(None, 7.0), (0, None), (2.0, 2.0)])
def test_first_delay(first: float | None, expected: float | None) -> None:
    clock, calls = Clock(), []
    service = PeriodicService(clock, 7.0, lambda: calls.append(clock.seconds()), first=first)
    service.startService()
    assert (calls == [0.0]) == (first == 0)
    assert service.next_call() == (7.0 if first == 0 else expected)
