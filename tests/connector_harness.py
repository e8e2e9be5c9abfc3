"""
The core around a connector under test: a real SQLite store, the rules
brain, the pipeline and the outbox delivering through the connector, and a
notifier whose gateway pushes are recorded.  Platforms' local servers are
the tests' own; this is everything on openclaw's side of the wire.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet import defer, reactor

from openclaw.agent.rules import RulesBrain
from openclaw.facts import RuntimeFacts
from openclaw.notify import Notifier
from openclaw.outbox import OutboxService
from openclaw.pipeline import Pipeline
from openclaw.runtime import Runtime
from openclaw.status import TreeStatus
from tests.fakes import FixedStatus
from openclaw.store.sqlite import SQLiteStore


class Harness:
    """Start with ``start(make_connector)``; stop with ``stop()``."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.runtime = Runtime(reactor)
        self.store = SQLiteStore(reactor, os.path.join(home, "openclaw.sqlite3"))
        self.pushed: list[tuple[str, str, dict]] = []
        self.deliverers: dict[str, Callable] = {}
        self.outbox = OutboxService(reactor, self.store, self.deliverers, max_attempts=5, poll_every=0.2)
        # What /health would say of the connector, for the rules brain.
        self.tree = TreeStatus([FixedStatus(
            "connectors", lambda: {self.connector.name: self.connector.health()} if self.connector else {})])
        self.pipeline = Pipeline(self.runtime, self.store, RulesBrain(RuntimeFacts(self.runtime, self.tree)), self.outbox)
        self.notifier = Notifier(reactor, self.store, self._push, self.outbox.kick)
        self.connector: Any = None

    def _push(self, session: str, event: str, payload: dict) -> int:
        self.pushed.append((session, event, payload))
        return 1

    def start(self, make_connector: Callable[["Harness"], Any]) -> Any:
        """
        Build the connector with ``make_connector(harness)`` (use
        ``harness.pipeline``, ``.store``, ``.notifier``) and start everything.
        """
        self.store.startService()
        self.connector = make_connector(self)
        self.deliverers[self.connector.name] = self.connector.deliver
        self.pipeline.startService()
        self.outbox.startService()
        self.connector.startService()
        return self.connector

    @defer.inlineCallbacks
    def stop(self) -> Any:
        if self.connector is not None and self.connector.running:
            yield self.connector.stopService()
        yield self.outbox.stopService()
        yield self.pipeline.stopService()
        yield self.store.stopService()
