"""
The checks service: runs every configured check on its own interval, turns
results into alerts and recoveries through the policy, and remembers enough
to answer ``openclaw checks``, ``/health`` and the morning report.

Per result: metrics (``check_up``, ``check_latency``), a ``check`` journal
record (uptime and p95 latency for the report), and a policy step.  A
decision is sent through the notifier before the new policy state is
saved: a crash in between decides again after restart with the same
incident id, so the notifier's dedupe key drops the repeat, while a failed
send leaves the state as it was and the next result decides again.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence
from zoneinfo import ZoneInfo

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from zope.interface import implementer

from openclaw import metrics
from openclaw.eliotutil import log, message_type, typed
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError
from openclaw.config import Config
from openclaw.interfaces import IDrainable, IReconfigurable, IStatusSource
from openclaw.config.proactive import CheckConfig
from openclaw.periodic import PeriodicService
from openclaw.status import StatusSource
from openclaw.proactive.check_history import DAY, history
from openclaw.proactive.policy import CheckState, Decision, flapping, step

if TYPE_CHECKING:  # probes pull in HTTP, TLS and psutil: only once a check is configured
    from openclaw.proactive.probes import Probe, ProbeResult

# Checks of a service that can be down; the others watch this host's resources.
SERVICE_TYPES = ("http", "tcp", "dns", "process")


CHECK = typed("check", [str], "the check's name")
ERROR = typed("error", [str], "why")
CHECK_STARTED = message_type("openclaw:check:started", [typed("checks", [int], "checks configured")],
                             "the checks' loops started")
CHECK_RESULT = message_type("openclaw:check:result", [
    CHECK, typed("ok", [bool], "the probe passed"), typed("latency", [int, float], "seconds"),
    typed("detail", [str], "the probe's words"),
], "one check run: a probe's result", "debug")
CHECK_DECISION = message_type("openclaw:check:decision", [
    CHECK, typed("decision", [str], "alert, realert or recovery"), typed("incident", [str, None], "the incident id"),
    typed("failures", [int], "failures in a row"),
], "a check alerted, re-alerted or recovered (warn for alerts)", "warn")
CHECK_RECONFIGURED = message_type("openclaw:check:reconfigured", [
    typed("checks", [int], "checks configured now"), typed("changed", [list], "checks added or changed"),
], "a reload changed the checks")
CHECK_LOAD_FAILED = message_type("openclaw:check:load-failed", [CHECK, ERROR],
                                 "a check's saved state could not be read", "error")
CHECK_JOURNAL_FAILED = message_type("openclaw:check:journal-failed", [CHECK, ERROR],
                                    "a result's journal record could not be written", "error")
CHECK_DECIDE_FAILED = message_type("openclaw:check:decide-failed", [
    CHECK, typed("decision", [str, None], "the decision being sent"), ERROR,
], "a decision could not be sent or saved (the next result decides again)", "error")


def duration(seconds: float) -> str:
    """``45s``, ``4m``, ``2h 5m``, ``3d 4h``."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def message(
    decision: Decision, check: CheckConfig, state: CheckState, detail: str, now: float,
    at: Callable[[float], str],
) -> str:
    """The owner-facing text of a decision; ``at`` formats a time of day."""
    down = "DOWN" if check.type in SERVICE_TYPES else "failing"
    started = state.down_since if state.down_since is not None else now
    if decision == "alert":
        n = state.failures
        return f"{check.name} is {down}: {detail} ({n} failure{'' if n == 1 else 's'} since {at(state.since or now)})"
    if decision == "realert":
        return f"{check.name} is still {down}: {detail} (for {duration(now - started)}, since {at(started)})"
    back = "back up" if check.type in SERVICE_TYPES else "OK again"
    return f"{check.name} is {back} after {duration(now - started)}"


def shown_target(target: str) -> str:
    """The target without URL credentials (``https://user:pw@host`` -> ``https://host``)."""
    return re.sub(r"^([a-z]+://)[^/@]*@", r"\1", target)


def format_states(states: list[dict[str, Any]], now: float) -> str:
    """``checks.list`` as lines for ``openclaw checks``: name, type, status and for how long, latency, detail."""
    if not states:
        return "no checks configured"
    rows = []
    for s in states:
        status = "pending" if s["ok"] is None else "up" if s["ok"] else "DOWN"
        if s["since"] is not None:
            status += f" {duration(now - s['since'])}"
        if s["alerting"]:
            status += ", alerted"
        if s["flapping"]:
            status += ", flapping"
        latency = "" if s["last_latency"] is None else f"{s['last_latency']:.3f}s"
        rows.append((s["name"], s["type"], status, latency, s["last_detail"] or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[4]]).rstrip() for row in rows)


@implementer(IDrainable, IReconfigurable, IStatusSource)
class ChecksService(StatusSource, Service):
    """
    One ``PeriodicService`` per check on ``clock``: the first probe at start,
    then ``every`` after each probe ends; a check's runs never overlap.

    :param probes: check name -> probe; default: ``make_probe`` for each.
    :param reactor: for the default probes' network and threads (default: ``clock``).
    :param timezone: IANA zone for times in messages (default: the host's).
    """

    def __init__(
        self, checks: Sequence[CheckConfig], store: Any, notifier: Any, clock: Any,
        probes: dict[str, Probe] | None = None, reactor: Any = None, timezone: str = "",
    ) -> None:
        self.checks = {c.name: c for c in checks}
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self._reactor = reactor or clock
        self._given_probes = probes
        self.probes = {c.name: self._probe(c) for c in checks}
        self.zone = ZoneInfo(timezone) if timezone else None
        #: Fires once saved states are loaded and loops run (not ``ready``: must not gate readiness).
        self.loaded: Deferred = succeed(None)
        #: Called with the check's name after each alert or recovery (the heartbeat's wake).
        self.on_change: Callable[[str], Any] = lambda name: None
        self._states = {name: CheckState() for name in self.checks}
        self._saved: dict[str, dict] = {}
        self._last: dict[str, ProbeResult] = {}
        self.loops = {name: self._loop(check) for name, check in self.checks.items()}
        self._retiring: list[Deferred] = []  # the stops of removed checks' loops whose probe is in flight
        self._draining = False

    def startService(self) -> None:
        Service.startService(self)
        self._draining = False
        self.loaded = self._load()
        self.loaded.addCallback(lambda _: self._start_loops())

    @inlineCallbacks
    def _load(self) -> Any:
        """Policy states from before a restart: an ongoing incident stays one incident."""
        for name in self.checks:
            try:
                data = yield self.store.get_state(f"check:{name}")
            except Exception as e:
                log(CHECK_LOAD_FAILED, level="error", check=name, error=repr(e))
                continue
            if data is not None:
                self._states[name] = CheckState.from_json(data)
                self._saved[name] = self._states[name].to_json()

    def _probe(self, check: CheckConfig) -> Probe:
        if self._given_probes is not None:
            return self._given_probes[check.name]
        from openclaw.proactive.probes import make_probe

        return make_probe(check, self._reactor)

    def _start_loops(self) -> None:
        if self._draining or not self.running:
            return
        for loop in self.loops.values():
            loop.startService()
        log(CHECK_STARTED, checks=len(self.checks))

    def _loop(self, check: CheckConfig) -> PeriodicService:
        """A check's loop: the first probe at start, then ``every`` after each probe ends."""
        return PeriodicService(self.clock, check.every, partial(self._run, check.name), name=f"check:{check.name}",
                               first=0)

    def reconfigure(self, config: Config) -> None:
        """
        Checks compared by name: removed ones stop, added ones start, changed
        ones probe again at once with their new interval and their policy
        state kept (an ongoing incident stays one incident); unchanged ones
        keep their schedule.  A probe in flight finishes.
        """
        self.zone = ZoneInfo(config.heartbeat.timezone) if config.heartbeat.timezone else None
        wanted = {c.name: c for c in config.checks}
        if wanted == self.checks:
            return
        for name in set(self.checks) - set(wanted):
            stopped = self.loops.pop(name).stopService()
            if not stopped.called:  # a probe in flight: drain waits for it too
                self._retiring.append(stopped)
                stopped.addBoth(lambda result, d=stopped: (self._retiring.remove(d), result)[1])
            del self.probes[name]
            self._states.pop(name, None)
            self._last.pop(name, None)
            for gauge in (metrics.check_up, metrics.check_latency):
                try:
                    gauge.remove(name)
                except KeyError:  # never probed
                    pass
        changed = [name for name, c in wanted.items() if self.checks.get(name) != c]
        live = self.running and not self._draining and self.loaded.called
        for name in changed:
            self.probes[name] = self._probe(wanted[name])
            self._states.setdefault(name, CheckState())
        self.checks = wanted
        log(CHECK_RECONFIGURED, checks=len(wanted), changed=sorted(changed))
        for name in changed:
            loop = self.loops.get(name)
            if loop is None:
                self.loops[name] = loop = self._loop(wanted[name])
                if live:
                    loop.startService()  # first=0: probes at once
            else:
                loop.set_interval(wanted[name].every)
                if live:
                    loop.call_soon()  # what it probes may have changed: at once, or right after the probe in flight

    def run(self, name: str) -> Deferred:
        """
        Probe ``name`` now, or join the run in progress (so runs never
        overlap); fires with the check's state (without a probe once
        draining).  Each caller gets its own Deferred, so one caller's
        callbacks never change another's result.
        """
        loop = self.loops[name]
        d = loop.current()
        if d is None:
            d = loop.call_soon()
        return d.addCallback(lambda state: self.state_of(name) if state is None else state)

    @inlineCallbacks
    def _run(self, name: str) -> Any:
        check = self.checks[name]
        try:
            result = yield self.probes[name]()
        except Exception as e:  # probes report failures as results; this is a bug
            from openclaw.proactive.probes import ProbeResult

            result = ProbeResult(False, 0.0, f"probe error: {e!r}")
        if name not in self._states:
            return None  # removed by a reload while it probed
        now = self.clock.seconds()
        self._last[name] = result
        metrics.check_up.labels(name).set(1 if result.ok else 0)
        metrics.check_latency.labels(name).set(result.latency)
        log(CHECK_RESULT, level="debug", check=name, ok=result.ok,
            latency=round(result.latency, 4), detail=result.detail)
        try:
            yield self.store.append_journal(
                "check", now, {"check": name, "ok": result.ok, "latency": result.latency, "detail": result.detail})
        except Exception as e:
            log(CHECK_JOURNAL_FAILED, level="error", check=name, error=repr(e))
        state, decision = step(self._states[name], result.ok, now, check)
        try:
            if decision is not None:
                yield self._notify(check, state, decision, result.detail, now)
            self._states[name] = state
            yield self._save(name, state)
        except Exception as e:
            log(CHECK_DECIDE_FAILED, level="error", check=name, decision=decision, error=repr(e))
        return self.state_of(name)

    def _notify(self, check: CheckConfig, state: CheckState, decision: Decision, detail: str, now: float) -> Deferred:
        kind = "recovery" if decision == "recovery" else "alert"
        key = f"check:{check.name}:{state.incident}:{kind}"
        if decision == "realert":
            key = f"check:{check.name}:{state.incident}:realert-{state.realerts}"
        log(CHECK_DECISION, level="warn" if kind == "alert" else "info", check=check.name,
            decision=decision, incident=state.incident, failures=state.failures)
        d = self.notifier.notify(kind, check.name, message(decision, check, state, detail, now, self._at),
                                 dedupe_key=key)
        d.addCallback(lambda result: (self.on_change(check.name), result)[1])
        return d

    def _save(self, name: str, state: CheckState) -> Any:
        data = state.to_json()
        if self._saved.get(name) == data:
            return None
        d = self.store.set_state(f"check:{name}", data)
        return d.addCallback(lambda _: self._saved.__setitem__(name, data))

    def _at(self, when: float) -> str:
        moment = datetime.fromtimestamp(when, self.zone)
        return moment.strftime("%H:%M" if self.clock.seconds() - when < 86400 else "%b %d %H:%M")

    # Status

    def state_of(self, name: str) -> dict[str, Any]:
        check, state, last = self.checks[name], self._states[name], self._last.get(name)
        return {
            "name": name, "type": check.type, "target": shown_target(check.target),
            "ok": state.ok, "since": state.since,
            "last_latency": None if last is None else round(last.latency, 6),
            "last_detail": None if last is None else last.detail,
            "failures": state.failures, "alerting": state.alerting, "flapping": flapping(state.changes),
        }

    status_key = "checks"

    def status(self) -> dict[str, dict[str, Any]]:
        """Each check's state by name (an alerting check is the owner's news, not the daemon's illness)."""
        return {state["name"]: state for state in self.states()}

    def states(self) -> list[dict[str, Any]]:
        """Every check's status, in config order: ``openclaw checks``, ``/health``, heartbeat."""
        return [self.state_of(name) for name in self.checks]

    # Shutdown

    def drain(self) -> Deferred:
        """No new probes; wait for those in flight (each bounded by its timeout)."""
        self._draining = True
        stops = [loop.stopService() for loop in self.loops.values()] + list(self._retiring)
        return DeferredList(stops).addCallback(lambda _: None)

    def hurry(self) -> None:
        """Nothing to cut short: in-flight probes end by their own timeout."""

    def stopService(self) -> Deferred:
        d = self.drain()
        Service.stopService(self)
        return d


def checks_methods(service: ChecksService) -> dict[str, Callable[[Any, dict], Any]]:
    """Gateway methods: ``checks.list`` (every state), ``checks.run`` (probe one now), ``checks.history`` (the last day)."""

    def list_checks(conn: Any, params: dict) -> dict:
        return {"checks": service.states()}

    def run_check(conn: Any, params: dict) -> Deferred:
        name = params.get("name")
        if not isinstance(name, str) or name not in service.checks:
            raise FrameError(frames.INVALID_FIELD, f"field 'name' must be one of: {', '.join(service.checks)}")
        return service.run(name).addCallback(lambda state: {"check": state})

    def check_history(conn: Any, params: dict) -> Deferred:
        now = service.clock.seconds()
        d = service.store.journal("check", now - DAY)
        return d.addCallback(lambda rows: {"start": now - DAY, "end": now, "checks": {
            name: found for name, found in history(rows, now - DAY, now).items() if name in service.checks}})

    return {"checks.list": list_checks, "checks.run": run_check, "checks.history": check_history}
