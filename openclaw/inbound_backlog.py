"""
The cluster's inbound backlog, for admission with several instances.

With Redis a message is acknowledged by the instance its sender reached
but answered by the one holding its session's shard, so no instance's own
counts see the whole queue: one can keep acknowledging while another's
shards fall seconds behind.  Every ``POLL`` seconds ``BacklogWatch`` reads
two numbers the store keeps in the scripts that change them: events
received and not yet answered (all instances) and events answered so far.
The backlog times the moving average of the time between two answers is
the wait a new message can expect wherever it is answered; the pipeline
refuses past its wait bound on that too (``openclaw.admission``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from zope.interface import implementer

from openclaw import admission, metrics
from openclaw.interfaces import IStatusSource
from openclaw.periodic import PeriodicService
from openclaw.status import StatusSource

#: Seconds between two reads of the backlog: well under the wait bound.
POLL = 0.1


@implementer(IStatusSource)
class BacklogWatch(StatusSource, PeriodicService):
    """Reads ``store.inbound_backlog()`` every ``POLL`` s; ``wait()`` is the cluster's estimated wait."""

    status_key = "inbound_backlog"

    def __init__(self, clock: Any, store: Any) -> None:
        PeriodicService.__init__(self, clock, POLL, self._poll, name="inbound-backlog")
        self.store = store
        self.pending = 0
        self.spacing = 0.0
        self._answered: int | None = None  # the answered count at the last reading
        self._mark = 0.0  # since when the backlog has waited for its next answer

    @inlineCallbacks
    def _poll(self) -> Any:
        try:
            pending, answered = yield self.store.inbound_backlog()
        except Exception:
            # Redis is failing: the guarded store reports it (in /health, once
            # in the log), and every receive fails meanwhile.  No error line
            # per poll, and no refusing on a backlog that is no longer known.
            self.pending, self._answered = 0, None
            metrics.inbound_backlog.set(0)
            return
        self.observe(self.clock.seconds(), pending, answered)

    def observe(self, now: float, pending: int, answered: int) -> None:
        """
        One reading.  Answers that came while a backlog waited are a sample
        of the time between two answers: the time since the previous
        answer (or since the backlog began) over how many came.
        """
        if self._answered is not None and answered > self._answered and self.pending:
            self.spacing = admission.smoothed(self.spacing, (now - self._mark) / (answered - self._answered))
        if self._answered is None or answered != self._answered or not self.pending:
            self._mark = now
        self._answered, self.pending = answered, pending
        metrics.inbound_backlog.set(pending)

    def wait(self) -> float:
        """The backlog's estimated wait: one answer per ``spacing`` (0 until answers were seen)."""
        return self.pending * self.spacing

    def status(self) -> dict[str, Any]:
        return {"pending": self.pending, "spacing": round(self.spacing, 5), "estimated_wait": round(self.wait(), 3)}
