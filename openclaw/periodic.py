"""
The one periodic-service primitive: the outbox's poll, pruning, state
saving, every check and the heartbeat all run on it.

The shape is Magic-Folder's ``PeriodicService``
(``src/magic_folder/util/twisted.py``):

- the interval runs from the *end* of one call to the start of the next,
  so a slow call delays the next one instead of overlapping it or being
  followed at once by a call that was due meanwhile;
- ``call_soon()`` asks for a call now; a request made while a call runs
  is served by one more call right after it (any number of them coalesce
  into that one), so two calls never overlap; a call restarts the interval;
- a call that fails is logged (``openclaw:periodic:failed``) and the loop
  goes on, unlike ``TimerService``/``LoopingCall``, which stop at the first
  error;
- ``stopService`` cancels what is scheduled, answers the requests not yet
  served, and fires once the call in progress (if any) is over.

The clock is injected, so tests drive it with a ``task.Clock``.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from openclaw.eliotutil import log, message_type, typed

PERIODIC_FAILED = message_type("openclaw:periodic:failed", [
    typed("service", [str], "whose loop (outbox, prune, state, check:NAME, heartbeat)"),
    typed("error", [str], "the failure, repr'd"),
], "a periodic call failed; the loop goes on and calls again at the next interval", "error")


class PeriodicService(Service):
    """
    Calls ``call`` every ``interval`` seconds (measured from the end of the
    previous call) and whenever ``call_soon()`` asks.

    :param clock: the reactor, or a ``task.Clock`` in tests.
    :param interval: seconds from the end of one call to the start of the
        next; ``0`` calls only on request.
    :param call: takes no argument and may return a Deferred; its result is
        what ``call_soon()`` and ``current()`` Deferreds fire with (``None``
        when it failed).
    :param name: says whose loop it is in the log.
    :param first: seconds from start to the first call; ``None`` is one
        interval, ``0`` calls at start (through ``call_soon``).
    :param align: given the time a call falls due, the time it may run
        (the heartbeat moves a due beat into its active hours).
    :param gather_turn: ``call_soon`` starts the call on the next reactor
        turn (``callLater(0)``), so every request of one turn shares one call;
        otherwise an idle service calls at once.
    """

    def __init__(
        self, clock: IReactorTime, interval: float, call: Callable[[], Any], *, name: str = "",
        first: float | None = None, align: Callable[[float], float] | None = None, gather_turn: bool = False,
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.name = name
        self.first = first
        self._call = call
        self._align = align
        self._gather_turn = gather_turn
        self._delayed: IDelayedCall | None = None  # the next timed call
        self._soon: IDelayedCall | None = None  # a requested call, on the next turn
        self._busy = False
        self._serving: list[Deferred] = []  # answered when the running call ends
        self._waiting: list[Deferred] = []  # served by the next call
        self._stopped = False
        self._since = 0.0  # the end of the last call, or the start: where the interval is measured from

    # Service

    def startService(self) -> None:
        Service.startService(self)
        self._stopped = False
        self._since = self.clock.seconds()
        if self._busy:
            return  # a call requested before start is running; its end schedules the next
        if self.first == 0:
            self.call_soon()
        else:
            self._arm(self.interval if self.first is None else self.first)

    def stopService(self) -> Deferred:
        """Call no more; fires once the call in progress (if any) is over."""
        Service.stopService(self)
        self._stopped = True
        self._cancel()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        current = self.current()
        return current if current is not None else succeed(None)

    # Requests

    def call_soon(self) -> Deferred:
        """
        Call as soon as no call runs: now (or on the next turn, with
        ``gather_turn``) when idle, else right after the running call.
        Before the first start the call is made once, with no timer; after
        ``stopService`` nothing is called.

        :return: a Deferred firing with the result of the call that serves
            this request (``None`` if it failed or the service stopped first).
        """
        if self._stopped:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        if not self._busy:
            self._request()
        return d

    def current(self) -> Deferred | None:
        """A Deferred firing with the running call's result, or ``None`` when no call runs."""
        if not self._busy:
            return None
        d: Deferred = Deferred()
        self._serving.append(d)
        return d

    @property
    def busy(self) -> bool:
        """Whether a call is running."""
        return self._busy

    @property
    def stopped(self) -> bool:
        """Whether ``stopService`` was called (and no start since): requests are refused."""
        return self._stopped

    def next_call(self) -> float | None:
        """When the next timed call is due; ``None`` while a call runs, or when none is scheduled."""
        if self._delayed is None or not self._delayed.active():
            return None
        return self._delayed.getTime()

    def set_interval(self, seconds: float, *, next_in: float | None = None) -> None:
        """
        Change the interval.  Between calls the next one is rescheduled
        ``seconds`` after the end of the last call (or the start), or
        ``next_in`` seconds from now when given; a call running or requested
        schedules with the new interval when it ends.
        """
        self.interval = seconds
        if self.running and not self._stopped and not self._busy and self._soon is None:
            self._arm(seconds if next_in is None else self.clock.seconds() - self._since + next_in)

    # The loop

    def _request(self) -> None:
        if self._gather_turn:
            if self._soon is None:
                self._soon = self.clock.callLater(0, self._start)
        else:
            self._start()

    def _arm(self, after: float) -> None:
        """Schedule the timed call ``after`` seconds after the last call ended (none for 0, or less, or NaN)."""
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        if not after > 0:
            return
        due = self._since + after
        if self._align is not None:
            due = self._align(due)
        self._delayed = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._start)

    def _cancel(self) -> None:
        for call in (self._delayed, self._soon):
            if call is not None and call.active():
                call.cancel()
        self._delayed = self._soon = None

    def _start(self) -> None:
        self._cancel()
        self._serving, self._waiting = self._waiting, []
        self._busy = True  # before the call: a request it makes waits for the next one
        maybeDeferred(self._call).addBoth(self._ended)

    def _ended(self, result: Any) -> None:
        if isinstance(result, Failure):
            log(PERIODIC_FAILED, level="error", service=self.name, error=repr(result.value))
            result = None
        self._busy = False
        self._since = self.clock.seconds()
        serving, self._serving = self._serving, []
        if not self._stopped:
            if self._waiting:
                self._request()
            elif self.running:
                self._arm(self.interval)
        for d in serving:
            d.callback(result)
