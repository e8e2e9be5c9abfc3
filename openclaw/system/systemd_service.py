"""
The service that keeps systemd informed: ready, alive, draining.

It is the last child of the ordered tree, so its ``startService`` runs once
every other child has started (``READY=1`` then means "really ready"), and its
``drain`` runs first on shutdown (``STOPPING=1`` before anything quiesces).
"""

import os
from collections.abc import Callable, Mapping

from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from openclaw.eliotutil import log
from openclaw.interfaces import IDrainable
from openclaw.system.sdnotify import SDNotifier, watchdog_interval

STATUS_INTERVAL = 60.0


@implementer(IDrainable)
class SystemdService(service.Service):
    """
    ``READY=1`` on start, ``WATCHDOG=1`` from the reactor while it turns,
    a fresh ``STATUS=`` every minute, ``STOPPING=1`` on drain.

    The watchdog is driven by a ``LoopingCall`` on the reactor, so a wedged
    reactor stops the pings and systemd restarts the daemon.  With no
    notifier (not run by systemd) every method is a no-op.
    """

    name = "systemd"

    def __init__(
        self,
        notifier: SDNotifier | None,
        clock: IReactorTime,
        status_text: Callable[[], str],
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._notifier = notifier
        self._clock = clock
        self._status_text = status_text
        self._environ = environ
        self._loops: list[LoopingCall] = []
        self._status_loop: LoopingCall | None = None
        self._draining = False

    def startService(self) -> None:
        super().startService()
        self._draining = False
        if self._notifier is None:
            return
        status = self._status()
        if status is None:
            self._notifier.send(READY=1)
        else:
            self._notifier.send(READY=1, STATUS=status)
        interval = watchdog_interval(self._environ)
        log("openclaw:systemd:ready", "info", watchdog_interval=interval)
        if interval is not None:
            # now=True: systemd's watchdog has been running since exec, so
            # the first ping goes with readiness rather than an interval on.
            self._start_loop(self._notifier.watchdog, interval, now=True)
        self._status_loop = self._start_loop(self._refresh_status, STATUS_INTERVAL, now=False)

    def _start_loop(self, f: Callable[[], object], interval: float, now: bool) -> LoopingCall:
        loop = LoopingCall(f)
        loop.clock = self._clock
        self._loops.append(loop)
        loop.start(interval, now=now)
        return loop

    def _status(self) -> str | None:
        """
        The caller's status line; ``None`` if it raised, so a broken status
        callback can neither block readiness nor stop the refresh loop.
        """
        try:
            return self._status_text()
        except Exception as e:
            log("openclaw:systemd:status-failed", "error", error=f"{type(e).__name__}: {e}")
            return None

    def _refresh_status(self) -> None:
        status = self._status()
        if status is not None and self._notifier is not None:
            self._notifier.status(status)

    def drain(self) -> Deferred[None]:
        """
        Say ``STOPPING=1`` and ``STATUS=draining`` once; nothing to wait for.

        The watchdog keeps pinging while the rest of the tree drains; the
        status refresh stops so it cannot overwrite "draining".
        """
        if self._notifier is not None and not self._draining:
            self._draining = True
            if self._status_loop is not None and self._status_loop.running:
                self._status_loop.stop()
            self._notifier.send(STOPPING=1, STATUS="draining")
            log("openclaw:systemd:stopping", "info")
        return succeed(None)

    def hurry(self) -> None:
        """Nothing is ever in flight here."""

    def stopService(self) -> Deferred[None] | None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        self._status_loop = None
        if self._notifier is not None:
            self._notifier.close()
        return super().stopService()
