"""
What the daemon knows about itself right now: its phase, the services'
states, sessions, the last heartbeat.  Services write it; ``/health``, the
gateway's ``status`` and the state file read it.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from openclaw import metrics
from openclaw.sessions import Sessions

STARTING, RUNNING, DRAINING, STOPPED = "starting", "running", "draining", "stopped"


class Runtime:
    """The daemon's shared, in-memory status; one per service tree."""

    def __init__(self, clock: IReactorTime, config_digest: str = "") -> None:
        self.clock = clock
        self.started_at = clock.seconds()
        self.config_digest = config_digest
        self.phase = STARTING
        self.services: dict[str, str] = {}
        self.sessions = Sessions()
        self.last_heartbeat: float | None = None
        self.next_heartbeat: Callable[[], float | None] = lambda: None
        self.heartbeat_overdue: Callable[[], bool] = lambda: False
        self.checks: Callable[[], list[dict[str, Any]]] = list
        self.mail: Callable[[], dict[str, dict[str, Any]]] = dict
        self.report: Callable[[], str | None] = lambda: None
        self.connectors: Callable[[], dict[str, dict[str, Any]]] = dict
        self.gateway: Callable[[], dict[str, int]] = dict
        self.nofile: tuple[int, int] | None = None
        self.outbox: dict[str, int] = {"pending": 0, "sent": 0, "failed": 0}
        #: The config file in use (None: built-in defaults) and the last reload's outcome.
        self.config_path: str | None = None
        self.last_reload: dict[str, Any] | None = None

    def mark_ready(self) -> None:
        """Startup finished: every service started and every port listens."""
        if self.phase == STARTING:
            self.phase = RUNNING
            metrics.ready.set(1)

    def mark_draining(self) -> None:
        """Shutdown began: readiness goes away, health reports draining."""
        self.phase = DRAINING
        metrics.ready.set(0)
        metrics.draining.set(1)

    def mark_stopped(self) -> None:
        self.phase = STOPPED
        metrics.draining.set(0)

    def heartbeat(self, when: float) -> None:
        self.last_heartbeat = when
        metrics.heartbeat_last.set(when)

    def uptime(self) -> float:
        return max(0.0, self.clock.seconds() - self.started_at)
