"""
Cron jobs: the morning report, reminders and extra heartbeats at cron times.

Each job keeps a record in the store under ``cron:<name>``: ``first_seen``;
``settled``, the instant up to which every due time was run or recorded as
missed (see ``openclaw.proactive.schedule``); and its last run's ``due``,
``started``, ``outcome`` (started, ok, failed, interrupted), ``error`` and
``finished``.

At most once: a run's record ("started", with its due time) is written
before the action starts, so a restart never runs one due time twice; a run
the restart cut short is recorded as ``interrupted`` instead of repeated.
The actions talk to a person, so a report or reminder missing (and said to
be missing) beats one arriving twice.

Across several instances on one Redis, cron runs only on the holder of the
scheduler lease, and every write of a record goes through ``save_state``:
the guarded write, which Redis refuses once a newer holder exists.  A
holder that lost the lease (a pause, a partition) therefore cannot record a
start, and so never runs a due time the new holder owns; the new holder
loads the records afresh when it starts, so a due time recorded as started
is not run again, and one missed within grace is run.

Every due time ends up in the journal (kind ``cron``) and in
``cron_runs{job,outcome}``: ``ok``, ``failed``, ``interrupted``, ``missed``
(down longer than the job's ``grace``, which is at least ``SLACK``: a
timer firing a little late is not an outage) or ``skipped`` (the job's previous run
was still going: runs never overlap).  Failed and interrupted runs also
tell the owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from openclaw import metrics
from openclaw.cluster.redis_lease import Fenced
from openclaw.config import Config
from openclaw.config.proactive import CronConfig
from openclaw.eliotutil import log, message_type, typed
from openclaw.interfaces import IDrainable, IReconfigurable
from openclaw.proactive.schedule import plan, wall, zone

#: A timer firing this late is still on time, whatever the job's grace.
SLACK = 60.0
#: Seconds before trying again when the store failed during a decision.
RETRY = 60.0


JOB = typed("job", [str], "the cron job's name")
DUE = typed("due", [int, float], "the due time, epoch seconds")
ERROR = typed("error", [str], "why")
CRON_RUN = message_type("openclaw:cron:run", [JOB, typed("action", [str], "heartbeat, message or report"), DUE],
                        "a cron job fires")
_ENDED = [JOB, DUE, typed("error", [str, None], "why it did not end ok"), typed("duration", [int, float], "seconds")]
CRON_OUTCOMES = {
    "ok": message_type("openclaw:cron:ok", _ENDED, "a run ended well"),
    "failed": message_type("openclaw:cron:failed", _ENDED, "a run failed", "warn"),
    "interrupted": message_type("openclaw:cron:interrupted", _ENDED, "the daemon stopped during a run", "warn"),
    "missed": message_type("openclaw:cron:missed", [
        JOB, DUE, typed("count", [int], "due times missed"), typed("last", [int, float], "the last one missed"),
        typed("more", [bool], "more were missed than counted"),
    ], "due times passed while the daemon was down (not run)", "warn"),
    "skipped": message_type("openclaw:cron:skipped", [JOB, DUE, typed("running", [int, float], "the run still going")],
                            "a due time came while the previous run was still going", "warn"),
}
CRON_FENCED = message_type("openclaw:cron:fenced", [JOB, DUE, ERROR],
                           "a run's start record was refused: this instance no longer holds the scheduler lease, "
                           "so the due time is the new holder's (not run here)", "warn")
CRON_NEVER_DUE = message_type("openclaw:cron:never-due", [JOB, typed("schedule", [str], "the expression")],
                              "the expression matches no date", "warn")
CRON_TICK_FAILED = message_type("openclaw:cron:tick-failed", [JOB, ERROR], "a job's tick failed (retried)", "error")
CRON_SAVE_FAILED = message_type("openclaw:cron:save-failed", [JOB, ERROR], "a run's record could not be saved",
                                "error")
CRON_NOTIFY_FAILED = message_type("openclaw:cron:notify-failed", [JOB, ERROR],
                                  "the owner could not be told of a failed run", "error")
CRON_JOURNAL_FAILED = message_type("openclaw:cron:journal-failed", [JOB, ERROR],
                                   "a run's journal record could not be written", "error")

Record = dict[str, Any]


def report_day(due: float, tz: tzinfo) -> date:
    """The local day a report due at ``due`` covers: the one before."""
    return wall(due, tz).date() - timedelta(days=1)


def _beat_result(record: Any) -> Any:
    """A heartbeat that recorded itself as failed is a failed run here too."""
    if isinstance(record, dict) and record.get("verdict") == "failed":
        raise RuntimeError(record.get("error") or "the heartbeat failed")
    return record


@dataclass(eq=False)
class _Job:
    config: CronConfig
    tz: tzinfo
    record: Record | None = None
    next_due: float | None = None
    timer: IDelayedCall | None = None
    running: Deferred | None = None
    waiters: list[Deferred] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"cron:{self.config.name}"


@implementer(IDrainable, IReconfigurable)
class CronService(Service):
    """
    :param run_report: ``(day) -> Deferred`` writes and sends the report of
        a local ``datetime.date``.
    :param run_heartbeat: ``(instruction) -> Deferred`` runs one heartbeat.
    :param timezone: the zone of jobs that name none (empty: the host's).
    :param save_state: writes a job's record (default the store's
        ``set_state``; in a cluster the guarded write of the scheduler lease).
    """

    def __init__(
        self, clock: IReactorTime, store: Any, jobs: tuple[CronConfig, ...], notifier: Any,
        run_report: Callable[[date], Any], run_heartbeat: Callable[[str], Any], timezone: str = "",
        run_backup: Callable[[CronConfig], Any] | None = None,
        save_state: Callable[[str, Any], Deferred] | None = None,
    ) -> None:
        self.clock = clock
        self.store = store
        self.save_state = save_state or store.set_state
        self.notifier = notifier
        self.run_report = run_report
        self.run_heartbeat = run_heartbeat
        self.run_backup = run_backup
        self.timezone = timezone
        self._jobs = [_Job(job, zone(job.timezone or timezone)) for job in jobs]
        self._stopping = False
        #: Fires once every job has made its start decision (not ``ready``: it must not gate readiness).
        self.settled: Deferred = succeed(None)

    def startService(self) -> None:
        Service.startService(self)
        self._stopping = False
        for job in self._jobs:
            if job.running is None:
                job.record = None  # from the store: another instance may have run jobs since
        self.settled = gatherResults([self._tick(job) for job in self._jobs])

    @inlineCallbacks
    def _tick(self, job: _Job) -> Any:
        """Load the record if needed, settle what is due, set the next timer."""
        job.timer = None
        if self._stopping:
            return
        retry = None
        try:
            if job.record is None:
                job.record = yield self._load(job)
                if self._stopping:
                    return
            now = self.clock.seconds()
            decision = plan(job.config.schedule, job.tz, job.record["settled"], now,
                            max(job.config.grace, SLACK))
            job.record["settled"] = max(job.record["settled"], now)
            job.next_due = decision.next_due
            skipped = decision.run if job.running is not None else None
            if decision.run is not None and skipped is None:
                self._start_run(job, decision.run)  # saves the record before the action
            else:
                yield self._save(job)
            if decision.missed:
                yield self._journal(job, "missed", decision.missed[0], count=len(decision.missed),
                                    last=decision.missed[-1], more=decision.missed_more)
            if skipped is not None:
                yield self._journal(job, "skipped", skipped, running=job.record["due"])
        except Fenced:
            return  # another instance holds the scheduler now; this service is being stopped
        except Exception as e:
            log(CRON_TICK_FAILED, level="error", job=job.config.name, error=repr(e))
            retry = RETRY
        self._schedule(job, retry)

    def _schedule(self, job: _Job, delay: float | None = None) -> None:
        if self._stopping:
            return
        if delay is None:
            if job.next_due is None:
                log(CRON_NEVER_DUE, level="warn", job=job.config.name, schedule=job.config.schedule)
                return
            delay = max(0.0, job.next_due - self.clock.seconds())
        job.timer = self.clock.callLater(delay, self._tick, job)

    @inlineCallbacks
    def _load(self, job: _Job) -> Any:
        record = yield self.store.get_state(job.key)
        if record is None:
            # First sight: the first due time is the one after now.
            now = self.clock.seconds()
            return {"first_seen": now, "settled": now}
        if record.get("outcome") == "started":
            yield self._finish(job, record, "interrupted", "the daemon stopped during the run")
        return record

    def _save(self, job: _Job) -> Deferred:
        # A copy: the store may serialise it later, while the record changes.
        return self.save_state(job.key, dict(job.record or {}))

    def _start_run(self, job: _Job, due: float) -> None:
        assert job.record is not None
        job.record.update(due=due, started=self.clock.seconds(), outcome="started", error=None, finished=None)
        job.running = self._run(job, job.record, due)
        job.running.addBoth(self._run_ended, job)

    def _run_ended(self, _: Any, job: _Job) -> None:
        job.running = None
        waiters, job.waiters = job.waiters, []
        for d in waiters:
            d.callback(None)

    @inlineCallbacks
    def _run(self, job: _Job, record: Record, due: float) -> Any:
        try:
            yield self._save(job)
        except Fenced as e:
            log(CRON_FENCED, level="warn", job=job.config.name, due=due, error=str(e))
            return  # the lease passed on: this due time is the new holder's
        except Exception as e:
            # Without the record a restart could run this due time again.
            yield self._finish(job, record, "failed", f"could not record the start: {e}")
            return
        log(CRON_RUN, job=job.config.name, action=job.config.action, due=due)
        try:
            yield maybeDeferred(self._action, job.config, due, job.tz)
        except Exception as e:
            yield self._finish(job, record, "failed", str(e) or repr(e))
        else:
            yield self._finish(job, record, "ok")

    def _action(self, job: CronConfig, due: float, tz: tzinfo) -> Any:
        if job.action == "report":
            return self.run_report(report_day(due, tz), job.target)
        if job.action == "message":
            return self.notifier.notify("info", job.name, job.text, dedupe_key=f"cron:{job.name}:{due:.0f}",
                                        target=job.target)
        if job.action == "backup":
            if self.run_backup is None:
                raise RuntimeError("backups are not available in this daemon")
            return maybeDeferred(self.run_backup, job)
        return maybeDeferred(self.run_heartbeat, job.instruction).addCallback(_beat_result)

    @inlineCallbacks
    def _finish(self, job: _Job, record: Record, outcome: str, error: str | None = None) -> Any:
        """Record a run's end everywhere; each step on its own, so one failing drops none."""
        now = self.clock.seconds()
        record.update(outcome=outcome, error=error, finished=now)
        due = record["due"]
        try:
            yield self.save_state(job.key, dict(record))
        except Exception as e:
            log(CRON_SAVE_FAILED, level="error", job=job.config.name, error=repr(e))
        yield self._journal(job, outcome, due, error=error, duration=round(now - record["started"], 3))
        if outcome != "ok":
            try:
                yield self.notifier.notify(
                    "info", job.config.name, f"Cron job {job.config.name} {outcome}: {error}",
                    dedupe_key=f"cron-{outcome}:{job.config.name}:{due:.0f}", target=job.config.target)
            except Exception as e:
                log(CRON_NOTIFY_FAILED, level="error", job=job.config.name, error=repr(e))

    @inlineCallbacks
    def _journal(self, job: _Job, outcome: str, due: float, **fields: Any) -> Any:
        """One journal record and metric count: ``count`` due times (missed ones come in a batch)."""
        name = job.config.name
        metrics.cron_runs.labels(name, outcome).inc(fields.get("count", 1))
        log(CRON_OUTCOMES[outcome], level="info" if outcome == "ok" else "warn",
            job=name, due=due, **fields)
        try:
            yield self.store.append_journal("cron", self.clock.seconds(), {
                "job": name, "action": job.config.action, "due": due, "outcome": outcome, **fields})
        except Exception as e:
            log(CRON_JOURNAL_FAILED, level="error", job=name, error=repr(e))

    def states(self) -> list[dict[str, Any]]:
        """Each job's schedule and last run, for status listings."""
        result = []
        for job in self._jobs:
            record = job.record or {}
            result.append({
                "name": job.config.name, "schedule": job.config.schedule, "action": job.config.action,
                "timezone": job.config.timezone or self.timezone or "local", "next_due": job.next_due, "running": job.running is not None,
                "last_due": record.get("due"), "last_run": record.get("started"),
                "outcome": record.get("outcome"), "error": record.get("error"),
            })
        return result

    def reconfigure(self, config: Config) -> None:
        """
        Jobs compared by name: a removed one stops being scheduled, an added
        or changed one is scheduled from its record in the store (so a due
        time it already fired is not fired again), an unchanged one is left
        alone.  A job running now finishes.
        """
        wanted = {job.name: job for job in config.cron}
        if self.timezone == config.heartbeat.timezone and [j.config for j in self._jobs] == list(config.cron):
            return
        self.timezone = config.heartbeat.timezone
        kept = {job.config.name: job for job in self._jobs}
        jobs = []
        for name, job_config in wanted.items():
            job = kept.pop(name, None)
            tz = zone(job_config.timezone or self.timezone)
            if job is not None and job.config == job_config and job.tz == tz:
                jobs.append(job)
                continue
            if job is not None and job.timer is not None and job.timer.active():
                job.timer.cancel()
            jobs.append(_Job(job_config, tz))
        for job in kept.values():
            if job.timer is not None and job.timer.active():
                job.timer.cancel()
        self._jobs = jobs
        if self.running and not self._stopping:
            for job in jobs:
                if job.timer is None and job.running is None and job.record is None:
                    self._tick(job)

    def drain(self) -> Deferred:
        """No new runs; wait for the ones in progress (``hurry`` stops waiting)."""
        self._stopping = True
        for job in self._jobs:
            if job.timer is not None and job.timer.active():
                job.timer.cancel()
            job.timer = None
        waits = []
        for job in self._jobs:
            if job.running is not None:
                d: Deferred = Deferred()
                job.waiters.append(d)
                waits.append(d)
        return gatherResults(waits).addCallback(lambda _: None)

    def hurry(self) -> None:
        for job in self._jobs:
            waiters, job.waiters = job.waiters, []
            for d in waiters:
                d.callback(None)

    def stopService(self) -> Deferred:
        Service.stopService(self)
        self.drain()
        self.hurry()
        return succeed(None)
