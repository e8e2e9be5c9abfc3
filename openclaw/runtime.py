"""
What the daemon as a whole knows about itself: its phase, the services'
lifecycle states, sessions, the last heartbeat, the config in use.  The
services' own state (connectors, checks, the store ...) is not copied here:
each reports it itself (``IStatusSource``, read through ``status.TreeStatus``).
"""

from __future__ import annotations

from typing import Any

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
        self.nofile: tuple[int, int] | None = None
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
