"""
The root of the service tree: the home's lock, the ordered start, reload by
difference, and on shutdown one drain budget for the whole tree followed by
the ordered stop.

Splitting drain from stop keeps the health endpoint up, answering 503
"draining", while in-flight work finishes and its replies go out.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from typing import Any, Callable

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.python.failure import Failure

from openclaw import metrics, runfile
from openclaw.config import Config, ConfigError
from openclaw.config.loading import tighten_if_secret
from openclaw.eliotutil import begin, log
from openclaw.errors import StartupError
from openclaw.interfaces import IAdmission, IDrainable, IReconfigurable
from openclaw.lifecycle_log import DAEMON_TLS_LOADED, DAEMON_WHERE
from openclaw.ordered import OrderedMultiService
from openclaw.reload import ReloadOutcome, plan_reload
from openclaw.runtime import DRAINING, STARTING, STOPPED, Runtime
from openclaw.system import homelock, tlsstack
from openclaw.system.rlimits import raise_nofile

#: After the budget is spent and a child was hurried, how long its drain may
#: still take before the root stops waiting for it (and counts a failure).
HURRY_GRACE = 5.0

#: Exit status of a stop in which some child's drain or stop failed.
EX_STOP_FAILED = 1


class DaemonService(OrderedMultiService):
    """
    The daemon.  ``owns_process=True`` (set by the twistd plugin, never by
    in-process tests) raises the open-files limit, installs the signal
    handlers (SIGTERM/SIGINT drain, a second one hurries; SIGHUP reloads)
    and turns a failed start or stop into the exit status.

    :param load_config: re-reads the configuration for a reload, the same
        way it was found at start; raises ``ConfigError``.
    :param notify: ``notify(**fields)`` for systemd (``RELOADING=1`` ...).
    """

    def __init__(
        self, runtime: Runtime, reactor: Any, home: str | None, config: Config,
        owns_process: bool = False, load_config: Callable[[], Config] | None = None,
        notify: Callable[..., Any] = lambda **fields: None,
        runfile_facts: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        super().__init__(runtime)
        self.home = home
        self.config = config
        self._reactor = reactor
        self._owns_process = owns_process
        self._load_config = load_config or (lambda: self.config)
        self._notify = notify
        self._runfile_facts = runfile_facts
        self._lock_fd: int | None = None
        self._runfile_written = False
        self._config_checked = False
        self._hurried = False
        self._reloading: Deferred = succeed(None)
        self._stop_failures = 0
        #: Called once the daemon is ready (e.g. to journal the restart).
        self.when_ready: list[Callable[[], Any]] = []

    # Start

    def privilegedStartService(self) -> None:
        if self._owns_process:
            # Before anything starts, so a signal right after READY=1 already
            # drains (the drain waits for the reactor to run).
            self._install_signal_handlers()
        self._exit_on_startup_error(self._lock_home)
        self._exit_on_startup_error(super().privilegedStartService)
        self._secure_config_file()
        self._write_runfile()  # the ports are bound: before READY=1, CLI commands can find them

    def _write_runfile(self) -> None:
        if self.home is not None and not self._runfile_written:
            facts = self._runfile_facts()
            runfile.write(self.home, facts)
            self._runfile_written = True
            log(DAEMON_WHERE, **where_to_connect(self.home, self.config, facts))

    def hold_lock(self, fd: int) -> None:
        """The home's lock, already taken (by ``makeService``, before twistd's own start)."""
        self._lock_fd = fd

    def _lock_home(self) -> None:
        if self.home is None or self._lock_fd is not None:
            return
        # The home holds the token, the store and the logs: owner only.
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        self._lock_fd = homelock.acquire(self.home)

    def _secure_config_file(self) -> None:
        if self._config_checked:
            return
        self._config_checked = True
        path = self.runtime.config_path
        was = tighten_if_secret(path)
        if was is not None:
            now = stat.S_IMODE(os.stat(path).st_mode)
            log("openclaw:config:permissions", level="warn", path=path, was=oct(was), now=oct(now),
                why="the file holds secrets: group and others must not read it"
                    + ("" if now != was else "; not ours to change, fix it yourself"))

    def startService(self) -> None:
        self._exit_on_startup_error(self._start)

    def _exit_on_startup_error(self, start: Any) -> None:
        """
        Under twistd, a held home, a port in use or an unusable store ends
        the process with one line instead of a traceback: status 73 for the
        lock (a restart cannot help), 1 otherwise.
        """
        try:
            start()
        except StartupError as e:
            if not self._owns_process:
                raise
            self._report_startup_failure(e)
            raise SystemExit(homelock.EX_LOCKED if isinstance(e, homelock.HomeLocked) else 1)

    def _report_startup_failure(self, error: Exception) -> None:
        log("openclaw:daemon:startup-failed", level="error", reason=str(error))
        sys.stderr.write(f"openclaw: {error}\n")

    def _start(self) -> None:
        self._lock_home()
        self._secure_config_file()
        if self._owns_process:
            self.runtime.nofile = raise_nofile()
        super().startService()
        self._write_runfile()
        # Children that connect in the background (a Redis store) expose
        # ``ready``; the daemon is ready when all of them are.
        waiting = [child.ready for child in self if isinstance(getattr(child, "ready", None), Deferred)]
        self.ready = gatherResults(waiting, consumeErrors=True) if waiting else succeed(None)
        self.ready.addCallbacks(self._became_ready, self._failed_to_start)
        if self._owns_process:
            # Again once the reactor runs: starting it installs Twisted's own
            # handlers over ours.
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
        self._exit_after_shutdown(1)
        self._reactor.stop()

    # Reload

    def reload(self) -> Deferred:
        """
        Re-read the configuration and apply it by difference; reloads asked
        for while one runs go one after another.  :return: a Deferred firing
        with the ``ReloadOutcome`` (never failing).
        """
        d = Deferred()
        self._reloading.addBoth(lambda _: self._reload().addBoth(d.callback))
        self._reloading = d
        return d

    @inlineCallbacks
    def _reload(self) -> Any:
        now = self._reactor.seconds()
        action = begin("openclaw:daemon:reload")
        with action.context():
            if self.runtime.phase in (DRAINING, STOPPED):
                outcome = ReloadOutcome("rejected", now, reason="the daemon is shutting down")
            else:
                try:
                    new = self._load_config()
                except ConfigError as e:
                    outcome = ReloadOutcome("rejected", now, reason=str(e))
                else:
                    outcome = yield self._apply(new, now)
            self.runtime.last_reload = outcome.as_json()
            metrics.config_reloads.labels(outcome.result).inc()
            log("openclaw:daemon:reloaded", level="error" if outcome.result == "rejected" else "warn"
                if outcome.restart_needed or outcome.failed else "info", **outcome.as_json())
        action.finish()
        return outcome

    @inlineCallbacks
    def _apply(self, new: Config, now: float) -> Any:
        plan = plan_reload(self.config, new)
        if not plan.changed:
            return ReloadOutcome("unchanged", now, restart_needed=plan.restart_needed, digest=self.config.digest())
        self._notify(RELOADING=1, MONOTONIC_USEC=int(self._reactor.seconds() * 1e6))
        users = tlsstack.tls_users(plan.applied)
        if users and tlsstack.load():
            log(DAEMON_TLS_LOADED, users=list(users))
        failed: list[str] = []
        try:
            for child in self:
                if IReconfigurable.providedBy(child):
                    try:
                        yield child.reconfigure(plan.applied)
                    except Exception as e:
                        failed.append(child.name)
                        log("openclaw:daemon:reconfigure-failed", level="error", service=child.name, error=repr(e))
        finally:
            self._notify(READY=1)
        self.config = plan.applied
        self.runtime.config_digest = plan.applied.digest()
        return ReloadOutcome("applied", now, changed=plan.changed, restart_needed=plan.restart_needed,
                             failed=tuple(failed), digest=self.runtime.config_digest)

    # Stop

    @inlineCallbacks
    def stopService(self) -> Deferred:
        self.runtime.mark_draining()
        deadline = self._reactor.seconds() + self.config.daemon.drain_timeout
        action = begin("openclaw:daemon:drain", budget=self.config.daemon.drain_timeout)
        with action.context():
            # First, at once and everywhere: admit nothing new (the gateway
            # stops listening, connectors and chat.send refuse); then drain
            # last-first within one budget, then stop one child at a time.
            for child in self:
                if IAdmission.providedBy(child):
                    child.refuse_new()
        failures = yield self.walk_backwards(
            "drain", lambda c: self._drain_within(c, deadline), "drained", IDrainable.providedBy)
        failures += yield super().stopService()
        self.runtime.mark_stopped()
        action.add_success_fields(failures=failures, overrun=round(max(0.0, self._reactor.seconds() - deadline), 3))
        action.finish()
        if self._runfile_written:
            runfile.remove(self.home)
            self._runfile_written = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._owns_process:
            # twistd would re-raise the stopping signal at exit: a completed
            # drain is a clean stop (0); a failed drain or stop is not (1).
            self._reactor._exitSignal = None
            if failures:
                self._exit_after_shutdown(EX_STOP_FAILED)

    def _drain_within(self, child: Any, deadline: float) -> Deferred:
        """
        ``child.drain()``, hurried once the budget is spent (or at once after a
        second signal), and given up on ``HURRY_GRACE`` seconds after that.
        """
        result = Deferred()
        timers: list[Any] = []

        def hurry() -> None:
            metrics.drain_hurried.labels(child.name).inc()
            log("openclaw:daemon:drain-budget-spent", level="warn", service=child.name)
            child.hurry()
            timers.append(self._reactor.callLater(HURRY_GRACE, give_up))

        def give_up() -> None:
            if not result.called:
                result.errback(TimeoutError(f"{child.name} did not finish draining after hurry()"))

        def done(outcome: Any) -> None:
            for timer in timers:
                if timer.active():
                    timer.cancel()
            if not result.called:
                result.errback(outcome) if isinstance(outcome, Failure) else result.callback(None)

        drained = child.drain()
        remaining = deadline - self._reactor.seconds()
        if self._hurried or remaining <= 0:
            self._reactor.callLater(0, hurry)
        else:
            timers.append(self._reactor.callLater(remaining, hurry))
        drained.addBoth(done)
        return result

    def hurry(self) -> None:
        """Stop waiting for in-flight work: the operator asked twice."""
        log("openclaw:daemon:hurry", level="warn")
        self._hurried = True
        for child in self:
            if IDrainable.providedBy(child):
                child.hurry()

    def _exit_after_shutdown(self, status: int) -> None:
        def leave() -> None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

        self._reactor.addSystemEventTrigger("after", "shutdown", leave)

    # Signals: the handlers only schedule work on the reactor.  They never log
    # or take a lock: the main thread they interrupt may be inside a log write.

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, num: int, frame: Any) -> None:
        self._reactor.callFromThread(self._stop_signalled, num)

    def _on_hup(self, num: int, frame: Any) -> None:
        self._reactor.callFromThread(self.reload)

    def _stop_signalled(self, num: int) -> None:
        name = signal.Signals(num).name
        if self.runtime.phase in (DRAINING, STOPPED):
            log("openclaw:daemon:signal", level="warn", signal=name, effect="hurry")
            self.hurry()
            return
        log("openclaw:daemon:signal", level="warn", signal=name, effect="drain")
        self._reactor.stop()


def where_to_connect(home: str, config: Config, facts: dict[str, Any]) -> dict[str, Any]:
    """The start-up banner's fields: where to connect, and where the token, config, logs and store are."""
    store = config.store.url or "sqlite:///" + os.path.join(home, "data", "openclaw.sqlite3")
    return {
        "gateway": facts.get("gateway") or config.gateway.listen,
        "health": (facts["web"] + "health") if facts.get("web") else config.web.listen,
        "auth_file": "gateway.token in the config" if config.gateway.token else os.path.join(home, "gateway.token"),
        "config_file": facts.get("config") or "none (built-in defaults)",
        "logs": os.path.join(home, "logs", "combined.log") + ", " + os.path.join(home, "logs", "error.log"),
        "store": "redis://" + store.split("@")[-1] if store.startswith("redis://") else store,
    }
