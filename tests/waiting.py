"""Waiting for an event in tests without sleeping a fixed time."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

#: A ceiling, not a wait: on a loaded 2-core CI machine a reconnect can take seconds.
TIMEOUT = 15.0


@defer.inlineCallbacks
def until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "", every: float = 0.01) -> Any:
    """
    Fire once ``predicate()`` holds (checked every ``every`` seconds; it may
    return a Deferred, e.g. a question to a daemon); fail after ``timeout`` seconds.
    """
    deadline = reactor.seconds() + timeout
    while not (yield defer.maybeDeferred(predicate)):
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what or predicate} not met within {timeout:g}s")
        yield deferLater(reactor, every, lambda: None)


def step_clock(clock: Any, seconds: float) -> None:
    """
    Move a ``task.Clock`` on by ``seconds``, stopping at every due call so
    each runs at its own time (``Clock.advance`` runs them all at the end).
    """
    end = clock.seconds() + seconds
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= end]
        step = min(due) if due else end
        clock.advance(max(0.0, step - clock.seconds()))
        if not due:
            return
