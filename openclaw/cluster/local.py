"""
The cluster of one: with SQLite (one daemon per store) this instance is the
only one and holds every lease, so the guarded work runs as it always did.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from zope.interface import implementer

from openclaw import __version__
from openclaw.cluster.instance import new_instance_id
from openclaw.cluster import cluster_status
from openclaw.interfaces import ICluster, IStatusSource
from openclaw.status import StatusSource


@implementer(ICluster, IStatusSource)
class LocalCluster(StatusSource, Service):
    """Every lease is held from start to stop; guarded writes are plain ``set_state``."""

    status_key = "cluster"
    alone = True

    def __init__(self, clock: Any, store: Any, instance_id: str | None = None) -> None:
        self.clock = clock
        self.store = store
        self.instance_id = instance_id or new_instance_id()
        self.started_at = clock.seconds()
        self._watchers: dict[str, list[tuple[Callable[[], Any], Callable[[], Any]]]] = {}

    def lease(self, lease_name: str, on_acquired: Callable[[], Any], on_lost: Callable[[], Any]) -> None:
        self._watchers.setdefault(lease_name, []).append((on_acquired, on_lost))
        if self.running:
            on_acquired()

    def unlease(self, lease_name: str, on_acquired: Callable[[], Any], on_lost: Callable[[], Any]) -> None:
        watchers = self._watchers.get(lease_name, [])
        if (on_acquired, on_lost) in watchers:
            watchers.remove((on_acquired, on_lost))
        if not watchers:
            self._watchers.pop(lease_name, None)

    def holds(self, lease_name: str) -> bool:
        return True

    def held(self) -> list[str]:
        return sorted(self._watchers)

    def alive(self, instance_id: str) -> Deferred:
        return succeed(instance_id == self.instance_id)

    def instances(self) -> Deferred:
        return succeed([{"id": self.instance_id, "host": socket.gethostname(), "pid": os.getpid(),
                         "started_at": self.started_at, "version": __version__, "holds": self.held()}])

    def guarded_set_state(self, lease_name: str, key: str, value: Any) -> Deferred:
        return self.store.set_state(key, value)

    def startService(self) -> None:
        Service.startService(self)
        for watchers in self._watchers.values():
            for on_acquired, _ in watchers:
                on_acquired()

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        for watchers in self._watchers.values():
            for _, on_lost in reversed(watchers):
                yield maybeDeferred(on_lost)

    def status(self) -> dict[str, Any]:
        return cluster_status(self.instance_id, [], self.held())
