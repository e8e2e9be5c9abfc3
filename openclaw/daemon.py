"""
The root of the service tree: ordered start, then on shutdown a drain phase
(every ``IDrainable`` child, last first) followed by the ordered stop.

Splitting drain from stop keeps the health endpoint up, answering 503
"draining", while the gateway finishes its in-flight requests.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed

from openclaw.eliotutil import log
from openclaw.errors import StartupError
from openclaw.interfaces import IAdmission, IDrainable
from openclaw.ordered import OrderedMultiService
from openclaw.runtime import STARTING, Runtime
from openclaw.system.rlimits import raise_nofile


class DaemonService(OrderedMultiService):
    """
    The daemon.  ``owns_process=True`` (set by the twistd plugin, never by
    in-process tests) raises the open-files limit, makes a second
    SIGINT/SIGTERM during the drain stop waiting at once, and SIGHUP a logged
    no-op instead of death.
    """

    def __init__(self, runtime: Runtime, reactor: Any, home: str | None = None, owns_process: bool = False) -> None:
        super().__init__(runtime)
        self.home = home
        self._reactor = reactor
        self._owns_process = owns_process
        self._draining = False
        #: Called once the daemon is ready (e.g. to journal the restart).
        self.when_ready: list[Callable[[], Any]] = []

    def privilegedStartService(self) -> None:
        self._make_home()
        self._exit_on_startup_error(super().privilegedStartService)

    def _make_home(self) -> None:
        if self.home is not None:
            # The home holds the token, the store and the logs: owner only.
            os.makedirs(self.home, mode=0o700, exist_ok=True)

    def startService(self) -> None:
        self._exit_on_startup_error(self._start)

    def _exit_on_startup_error(self, start: Any) -> None:
        """
        Under twistd, a port in use or an unusable store ends the process
        with one line and status 1 instead of a traceback.
        """
        try:
            start()
        except StartupError as e:
            if not self._owns_process:
                raise
            self._report_startup_failure(e)
            raise SystemExit(1)

    def _report_startup_failure(self, error: Exception) -> None:
        log("openclaw:daemon:startup-failed", level="error", reason=str(error))
        sys.stderr.write(f"openclaw: {error}\n")

    def _start(self) -> None:
        self._make_home()
        if self._owns_process:
            self.runtime.nofile = raise_nofile()
        super().startService()
        # Children that connect in the background (a Redis store) expose
        # ``ready``; the daemon is ready when all of them are.
        waiting = [child.ready for child in self if isinstance(getattr(child, "ready", None), Deferred)]
        self.ready = gatherResults(waiting, consumeErrors=True) if waiting else succeed(None)
        self.ready.addCallbacks(self._became_ready, self._failed_to_start)
        if self._owns_process:
            self._reactor.callWhenRunning(self._install_signal_handlers)

    def _became_ready(self, _: Any) -> None:
        if self.runtime.phase != STARTING:
            return
        self.runtime.mark_ready()
        log("openclaw:daemon:ready", services=list(self.runtime.services), nofile=self.runtime.nofile)
        for hook in self.when_ready:
            hook()

    def _failed_to_start(self, failure: Any) -> None:
        error = getattr(failure.value, "subFailure", failure).value
        if not self._owns_process:
            log("openclaw:daemon:startup-failed", level="error", reason=str(error))
            return
        self._report_startup_failure(error)
        # Stop the tree in order, then leave with status 1 (not a clean stop).
        self._reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self._reactor.stop()

    @inlineCallbacks
    def stopService(self) -> Deferred:
        self._draining = True
        self.runtime.mark_draining()
        # First, at once and everywhere: admit nothing new (the gateway stops
        # listening); then drain and stop one child at a time.
        for child in self:
            if IAdmission.providedBy(child):
                child.refuse_new()
        yield self.walk_backwards("drain", lambda c: c.drain(), "drained", IDrainable.providedBy)
        yield super().stopService()
        self.runtime.mark_stopped()
        if self._owns_process:
            # twistd re-raises the stopping signal at exit unless told
            # otherwise; a completed drain is a clean stop: exit status 0.
            self._reactor._exitSignal = None

    def hurry(self) -> None:
        """Stop waiting for in-flight work: the operator asked twice."""
        log("openclaw:daemon:hurry", level="warn")
        for child in self:
            if IDrainable.providedBy(child):
                child.hurry()

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)

            def handler(num: int, frame: Any, previous: Any = previous) -> None:
                if self._draining:
                    self._reactor.callFromThread(self.hurry)
                elif callable(previous):
                    previous(num, frame)

            signal.signal(signum, handler)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_hup(self, num: int, frame: Any) -> None:
        self._reactor.callFromThread(
            log, "openclaw:daemon:sighup", level="warn",
            note="reload is not supported yet; SIGHUP ignored (restart to apply config)",
        )
