"""
One lease kept on Redis: try to acquire it every renew period, renew it
while held, and step down (call the watchers' ``on_lost``) the moment this
instance stops trusting it, which is before Redis could let it go.  The
decisions are ``openclaw.cluster.lease``'s; this class moves the bytes.

Requests go one at a time (the loop never overlaps itself) and each has a
deadline of one renew period: a Redis that does not answer counts as a failed
renew, and the step-down timer fires at the end of the trust either way.
"""

from __future__ import annotations

from typing import Any, Callable

from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed

from openclaw import metrics
from openclaw.cluster.lease import ACQUIRE, LOST, Holding, Timing
from openclaw.cluster.redis_lease import RedisLeases
from openclaw.eliotutil import action_type, begin, log, message_type, typed
from openclaw.periodic import PeriodicService

LEASE = typed("lease", [str], "the lease: scheduler, connector:<platform>:<account>")
TOKEN = typed("token", [int], "the fencing token of the acquisition")
ACQUIRED = message_type("openclaw:cluster:acquired", [LEASE, TOKEN, typed(
    "takeover", [bool], "an earlier holder had had it (failover, restart, rebalance)")],
    "this instance now holds the lease and starts the work it guards")
LOST_LEASE = message_type("openclaw:cluster:lost", [LEASE, TOKEN, typed(
    "reason", [str], "expired (not renewed in time), refused (another holds it), fenced (a write was refused)")],
    "this instance no longer holds the lease: the work it guards stops", "warn")
RELEASED = message_type("openclaw:cluster:released", [LEASE, TOKEN],
                        "this instance gave the lease back (stopping, or holding more than its share)")
STEP_DOWN = action_type("openclaw:cluster:step-down", [LEASE], [],
                        "the work a lease guards is stopped on this instance")
RENEW_FAILED = message_type("openclaw:cluster:renew-failed", [LEASE, typed("error", [str], "why")],
                            "lease requests began failing (logged once until one succeeds; a held lease steps down when its trust ends)",
                            "warn")
TIMER_SKIPPED = message_type("openclaw:cluster:timer-skipped", [typed("call", [str], "the timed call not run")],
                              "a timer of a lease's work came due while this instance no longer trusted the lease "
                              "(it woke from a pause, or lost Redis): not run", "warn")
WATCHER_FAILED = message_type("openclaw:cluster:watcher-failed", [LEASE, typed("error", [str], "why")],
                              "starting the work of an acquired lease, or stopping that of a lost one, failed",
                              "error")

Watcher = tuple[Callable[[], Any], Callable[[], Any]]


class LeaseKeeper:
    """
    :param leases: the scripts (``RedisLeases``).
    :param may_take: asked before each acquire (connector leases spread).
    """

    def __init__(
        self, clock: Any, leases: RedisLeases, name: str, instance_id: str, timing: Timing,
        may_take: Callable[[], bool] = lambda: True,
    ) -> None:
        self.clock = clock
        self.leases = leases
        self.name = name
        self.instance_id = instance_id
        self.timing = timing
        self.may_take = may_take
        self.holding = Holding(timing)
        self.watchers: list[Watcher] = []
        #: Why the last request failed (``None`` once one is answered).
        self.error: str | None = None
        self._expiry: Any = None
        self.loop = PeriodicService(clock, timing.renew_every, self.tick, name=f"lease:{name}", first=0)
        metrics.cluster_leases_held.labels(name).set(0)

    def held(self) -> bool:
        return self.holding.held(self.clock.seconds())

    def start(self) -> None:
        self.loop.startService()

    def tick(self) -> Deferred:
        """One step: acquire, renew, or notice the loss; the next one renew period after this one began."""
        sent = self.clock.seconds()

        def next_from_start(result: Any) -> Any:
            # A slow or timed-out request must not push the next renew past the end of the trust.
            self.loop.interval = max(0.001, sent + self.timing.renew_every - self.clock.seconds())
            return result

        return self._step(sent).addBoth(next_from_start)

    @inlineCallbacks
    def _step(self, sent: float) -> Any:
        step = self.holding.next_step(sent)
        if step == LOST:
            yield self._lose("expired")
            step = ACQUIRE
        try:
            if step == ACQUIRE:
                if not self.may_take():
                    return
                token = yield self._ask(self.leases.acquire(self.name, self.instance_id, self.timing.ttl))
                self.error = None
                if token is not None:
                    yield self._acquired(token, sent)
            else:
                token = self.holding.token
                ok = yield self._ask(self.leases.renew(self.name, self.instance_id, token, self.timing.ttl))
                self.error = None
                if self.holding.token != token:
                    return  # lost meanwhile (the step-down timer)
                if ok and self.holding.renewed(sent, self.clock.seconds()):
                    self._arm()
                else:
                    yield self._lose("refused" if not ok else "expired")
        except Exception as e:
            if self.error is None:  # once per outage, not every renew period
                log(RENEW_FAILED, level="warn", lease=self.name, error=str(e) or type(e).__name__)
            self.error = str(e) or type(e).__name__

    def _ask(self, d: Deferred) -> Deferred:
        return d.addTimeout(self.timing.renew_every, self.clock)

    def _acquired(self, token: int, sent: float) -> Any:
        self.holding.acquired(token, sent)
        if not self.held():  # the answer came after the trust would have ended: give it back
            self.holding.drop()
            return self._release_token(token)
        self._arm()
        metrics.cluster_leases_held.labels(self.name).set(1)
        takeover = token > 1
        if takeover:
            metrics.cluster_takeovers.labels(self.name).inc()
        log(ACQUIRED, lease=self.name, token=token, takeover=takeover)
        for on_acquired, _ in list(self.watchers):
            try:
                on_acquired()
            except Exception as e:
                log(WATCHER_FAILED, level="error", lease=self.name, error=repr(e))
        return succeed(None)

    def _arm(self) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = self.clock.callLater(max(0.0, self.holding.until - self.clock.seconds()), self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if self.holding.token is not None and not self.held():
            self._lose("expired")

    def lose(self, reason: str) -> Deferred:
        """Step down now (a guarded write was refused: another holds the lease)."""
        return self._lose(reason) if self.holding.token is not None else succeed(None)

    def _lose(self, reason: str) -> Deferred:
        token = self.holding.drop()
        metrics.cluster_lease_losses.labels(self.name, reason).inc()
        log(LOST_LEASE, level="warn", lease=self.name, token=token or 0, reason=reason)
        return self._step_down()

    def _step_down(self) -> Deferred:
        """Stop the guarded work, last watcher first."""
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        metrics.cluster_leases_held.labels(self.name).set(0)
        action = begin(STEP_DOWN, lease=self.name)
        with action.context():
            d = DeferredContext(self._stop_watchers())
            d.addActionFinish()
        return d.result

    @inlineCallbacks
    def _stop_watchers(self) -> Any:
        for _, on_lost in reversed(list(self.watchers)):
            try:
                yield maybeDeferred(on_lost)
            except Exception as e:
                log(WATCHER_FAILED, level="error", lease=self.name, error=repr(e))

    @inlineCallbacks
    def release(self) -> Any:
        """Step down and give the lease back at once (others need not wait for the TTL)."""
        token = self.holding.drop()
        if token is None:
            return
        yield self._step_down()
        log(RELEASED, lease=self.name, token=token)
        yield self._release_token(token)

    def _release_token(self, token: int) -> Deferred:
        d = self._ask(self.leases.release(self.name, self.instance_id, token))
        return d.addErrback(lambda f: None)  # it expires by itself

    @inlineCallbacks
    def stop(self) -> Any:
        """No more requests; release the lease if held."""
        yield self.loop.stopService()
        yield self.release()
