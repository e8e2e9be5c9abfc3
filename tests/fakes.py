"""Small in-memory stand-ins for the store parts that clock-driven tests touch."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from openclaw.interfaces import IStatusSource
from openclaw.status import StatusSource


class StateStore:
    """Key/value state and the journal, answered at once."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.journal: list[tuple[str, float, dict]] = []

    def get_state(self, key: str) -> Deferred:
        return succeed(self.state.get(key))

    def set_state(self, key: str, value: Any) -> Deferred:
        self.state[key] = value
        return succeed(None)

    def append_journal(self, kind: str, timestamp: float, payload: dict) -> Deferred:
        self.journal.append((kind, timestamp, dict(payload)))
        return succeed(None)


@implementer(IStatusSource)
class FixedStatus(StatusSource):
    """A part of ``/health`` read from ``read()``: stands in for a service when a test builds parts alone."""

    def __init__(self, key: str, read: Any) -> None:
        self.status_key = key
        self._read = read

    def status(self) -> Any:
        return self._read()
