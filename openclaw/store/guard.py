"""
The store as the rest of the daemon sees it: every ``IStore`` call passes
through ``GuardedStore``, which keeps the store's health.

A failing store (a read-only or full disk, Redis gone) must show: while the
last write (or read) failed, ``/health`` and ``/readyz`` answer 503 with the
store's state and last error, and ``openclaw_store_errors_total{op}`` counts.
The guard also retries a small probe write with capped backoff, so the state
turns back to ``ok`` as soon as the store works again even when no traffic
would show it.  Callers that must not lose work (the pipeline) retry their
own operations; callers that can refuse (``chat.send``) refuse.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface import implementer

from openclaw import metrics
from openclaw.eliotutil import log, message_type, typed
from openclaw.health import iso
from openclaw.interfaces import IStatusSource, IStore
from openclaw.status import StatusSource

#: Operations that only read: their failures and successes say nothing of writes.
READS = frozenset({
    "get_state", "state_keys", "pending_inbound", "inbound_state", "due_outbox", "outbox_counts",
    "message_counts", "history", "sessions", "journal",
})

PROBE_KEY = "store:probe"

KIND = typed("kind", [str], "read or write: which kind of operation fails")
OP = typed("op", [str], "the store operation, e.g. record_inbound")
STORE_FAILING = message_type("openclaw:store:failing", [
    KIND, OP, typed("error", [str], "the store's error, cut to 300 characters"),
], "the store began failing (/health and /readyz answer 503 until it works again)", "error")
STORE_RECOVERED = message_type("openclaw:store:recovered", [
    KIND, OP, typed("failing_for", [int, float], "seconds it had been failing"),
], "the store works again", "warn")

def probe_delay(attempt: int) -> float:
    """Seconds before probe ``attempt`` (1, 2, ...) while failing: 1 s, doubling, at most 30 s."""
    return min(30.0, 2.0 ** min(attempt - 1, 5))


class StoreUnavailable(Exception):
    """The store failed an operation; the caller may retry later (``str()`` says why)."""


def _short(failure: Any) -> str:
    return (failure.getErrorMessage() or type(failure.value).__name__)[:300]


@implementer(IStore, IStatusSource)
class GuardedStore(StatusSource, Service):
    """
    Wraps the configured store (a service of its own: started, stopped and
    ``ready`` through this one).  ``status()`` is the store's part of
    ``/health``; ``failing`` says whether readiness must be withdrawn.
    """

    def __init__(self, store: Any, clock: Any, op_timeout: float | None = None) -> None:
        self.store = store
        self.clock = clock
        #: A store whose client waits for a lost server instead of failing
        #: (txredisapi queues commands until it reconnects) gets a deadline:
        #: an operation not answered by then fails, and is cancelled, so a
        #: command still waiting for the connection is never sent.
        self.op_timeout = op_timeout
        self.kind = type(store).__name__
        self._failing: dict[str, tuple[str, str, float]] = {}  # read|write -> (op, error, since)
        self._probe: Any = None
        self._probes = 0

    # The service around the store

    @property
    def ready(self) -> Any:
        return getattr(self.store, "ready", None)

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self.store.privilegedStartService()

    def startService(self) -> Any:
        Service.startService(self)
        return self.store.startService()

    def stopService(self) -> Any:
        Service.stopService(self)
        if self._probe is not None and self._probe.active():
            self._probe.cancel()
        return self.store.stopService()

    # Health

    status_key = "store"

    @property
    def failing(self) -> bool:
        return bool(self._failing)

    def problems(self) -> list[str]:
        if not self._failing:
            return []
        op, error, _ = min(self._failing.values(), key=lambda f: f[2])
        return [f"the store is failing ({op}: {error})"]

    def blocks_readiness(self) -> bool:
        return self.failing

    def status(self) -> dict[str, Any]:
        if not self._failing:
            return {"state": "ok", "kind": self.kind}
        op, error, since = min(self._failing.values(), key=lambda f: f[2])
        return {"state": "failing", "kind": self.kind, "op": op, "last_error": error, "since": iso(since),
                "failing": sorted(self._failing)}

    def _called(self, name: str, d: Deferred) -> Deferred:
        kind = "read" if name in READS else "write"
        if self.op_timeout is not None and not d.called:
            d.addTimeout(self.op_timeout, self.clock)

        def succeeded(result: Any) -> Any:
            if kind in self._failing:
                op, error, since = self._failing.pop(kind)
                log(STORE_RECOVERED, level="warn", kind=kind, op=name, failing_for=round(
                    self.clock.seconds() - since, 3))
                metrics.store_failing.set(1 if self._failing else 0)
            return result

        def failed(failure: Any) -> Any:
            metrics.store_errors.labels(name).inc()
            error = _short(failure)
            if kind not in self._failing:
                log(STORE_FAILING, level="error", kind=kind, op=name, error=error)
                self._failing[kind] = (name, error, self.clock.seconds())
                metrics.store_failing.set(1)
                self._schedule_probe()
            else:
                self._failing[kind] = (name, error, self._failing[kind][2])
            return failure

        return d.addCallbacks(succeeded, failed)

    def _schedule_probe(self) -> None:
        if self._probe is None or not self._probe.active():
            self._probes += 1
            self._probe = self.clock.callLater(probe_delay(self._probes), self._run_probe)

    def _run_probe(self) -> None:
        if not self.running or not self._failing:
            self._probes = 0
            return
        d = self.get_state(PROBE_KEY) if "write" not in self._failing else self.set_state(
            PROBE_KEY, self.clock.seconds())
        d.addErrback(lambda _: None)  # counted and logged by _called
        d.addBoth(lambda _: self._schedule_probe() if self._failing else setattr(self, "_probes", 0))


def _guarded(name: str) -> Any:
    def call(self: GuardedStore, *args: Any, **kwargs: Any) -> Deferred:
        return self._called(name, maybeDeferred(getattr(self.store, name), *args, **kwargs))

    call.__name__ = name
    call.__doc__ = IStore[name].getDoc()
    return call


for _name in IStore.names():
    setattr(GuardedStore, _name, _guarded(_name))
del _name
