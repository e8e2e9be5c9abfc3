"""
Several providers in order, each behind a circuit breaker.

Any ``BrainError`` of one provider is a reason to try the next, retryable or
not: a rejected key (401/403) or an unknown model (404) at one provider says
nothing about the others.  The circuit keeps a provider that keeps failing
from costing every message a timeout (or from hammering an API with a bad
key): after ``failure_threshold`` consecutive failures it is skipped for
``reset_after`` seconds, then one trial call decides whether it is back.
"""

from __future__ import annotations

from collections.abc import Sequence

from eliot import current_action
from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from openclaw.agent.base import BrainError, BrainRequest
from openclaw.eliotutil import action_type, begin, log, message_type, typed
from openclaw.interfaces import IBrain


PROVIDER = typed("provider", [str], "one brain behind the failover")
BRAIN_FAILOVER = action_type("openclaw:brain:failover", [typed("providers", [int], "brains to try, in order")], [
    PROVIDER, typed("failed_before", [int], "providers that failed before this one answered"),
], "one answer from the first brain whose circuit allows it")
BRAIN_SKIPPED = message_type("openclaw:brain:skipped", [
    PROVIDER, typed("failures", [int], "failures in a row that opened its circuit"),
], "a provider skipped: its circuit is open", "debug")
BRAIN_PROVIDER_FAILED = message_type("openclaw:brain:provider-failed", [
    PROVIDER, typed("status", [int, None], "the HTTP status, if any"), typed("retryable", [bool], "worth retrying"),
    typed("reason", [str], "the error"), typed("circuit", [str], "the circuit's state after it"),
], "a provider failed; the next one is tried", "warn")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Circuit:
    """
    The breaker of one provider, as pure state driven by the caller's clock
    readings: ``closed`` (calls go through), ``open`` (skipped until
    ``reset_after`` has passed since it opened), ``half-open`` (one trial
    call in flight; its result closes or re-opens the circuit).
    """

    def __init__(self, failure_threshold: int, reset_after: float) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False

    def state(self, now: float) -> str:
        """The state at time ``now``; an open circuit whose wait is over reads half-open."""
        if self.opened_at is None:
            return CLOSED
        if self.trial or now - self.opened_at >= self.reset_after:
            return HALF_OPEN
        return OPEN

    def allow(self, now: float) -> bool:
        """Whether to call now; taking the half-open trial marks it in flight."""
        state = self.state(now)
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self.trial:
            self.trial = True
            return True
        return False

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial = False

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.trial or self.failures >= self.failure_threshold:
            self.opened_at = now
        self.trial = False


@implementer(IBrain)
class FailoverBrain:
    """Asks ``brains`` in order and answers with the first that replies."""

    uses_history = True

    def __init__(
        self,
        brains: Sequence[IBrain],
        clock: IReactorTime,
        failure_threshold: int = 3,
        reset_after: float = 60.0,
    ) -> None:
        if not brains:
            raise ValueError("a failover needs at least one brain")
        self.brains = list(brains)
        self.name = "failover(" + ",".join(b.name for b in self.brains) + ")"
        self.circuits = [Circuit(failure_threshold, reset_after) for _ in self.brains]
        self._clock = clock

    def respond(self, request: BrainRequest) -> Deferred:
        action = begin(BRAIN_FAILOVER, providers=len(self.brains))
        with action.context():
            return DeferredContext(self._respond(request)).addActionFinish()

    @inlineCallbacks
    def _respond(self, request: BrainRequest):
        errors: list[BrainError] = []
        for brain, circuit in zip(self.brains, self.circuits):
            if not circuit.allow(self._clock.seconds()):
                log(BRAIN_SKIPPED, "debug", provider=brain.name, failures=circuit.failures)
                continue
            try:
                reply = yield brain.respond(request)
            except Exception as e:  # noqa: BLE001 - a broken brain is one more failed provider
                error = e if isinstance(e, BrainError) else BrainError(f"{brain.name}: {type(e).__name__}", retryable=True)
                circuit.failed(self._clock.seconds())
                errors.append(error)
                log(BRAIN_PROVIDER_FAILED, "warn", provider=brain.name, status=error.status,
                    retryable=error.retryable, reason=str(error), circuit=circuit.state(self._clock.seconds()))
                continue
            circuit.succeeded()
            current_action().add_success_fields(provider=brain.name, failed_before=len(errors))
            return reply
        if not errors:
            raise BrainError("every provider's circuit is open", retryable=True)
        raise BrainError(
            "all providers failed: " + "; ".join(str(e) for e in errors),
            retryable=any(e.retryable for e in errors),
            status=errors[-1].status,
        )
