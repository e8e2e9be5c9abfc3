"""
The proactive part of the tree: checks, the heartbeat, cron (with the
morning report) and the mail watch, with their gateway methods.

Checks and the mail watch pull in HTTP and IMAP clients, so they are
imported only when configured; the heartbeat and cron always run (the
default cron job is the morning report).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from openclaw.config import Config
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError
from openclaw.notify import alerts_method
from openclaw.proactive.checks import ChecksService, checks_methods
from openclaw.proactive.cron import CronService
from openclaw.proactive.heartbeat import HeartbeatService, heartbeat_methods
from openclaw.proactive.report import Reporter, brain_summarizer
from openclaw.proactive.snapshot import Snapshotter
from openclaw.runtime import Runtime
from openclaw.status import TreeStatus


@dataclass
class Engine:
    """The services in start order and the gateway methods they add."""

    children: list[tuple[str, Any]] = field(default_factory=list)
    methods: dict[str, Callable[[Any, dict], Any]] = field(default_factory=dict)


def build_engine(
    config: Config, home: str, reactor: Any, runtime: Runtime, tree: TreeStatus, store: Any, brain: Any,
    notifier: Any, push: Callable[[str, str, dict], int], recent_errors: Callable[[], int],
    environ: Mapping[str, str] = os.environ, save_state: Callable[[str, Any], Any] | None = None,
    timers: Any = None,
) -> Engine:
    """
    Build (not start) the proactive services for ``config``; ``tree`` is what
    the services report; ``save_state`` writes cron's records and the
    heartbeat's claims (the cluster's guarded write); ``timers`` is the clock
    checks and cron schedule on (default ``reactor``; in a cluster one whose
    calls run only while the scheduler lease is held).
    """
    engine = Engine()
    # Always there, even with no checks, so a reload can add the first one;
    # the probes' HTTP and TLS clients load only once a check exists.
    timers = timers or reactor
    checks = ChecksService(config.checks, store, notifier, timers, reactor=reactor,
                           timezone=config.heartbeat.timezone)
    checks_states = checks.states
    engine.children.append(("checks", checks))
    engine.methods.update(checks_methods(checks))

    cron: CronService | None = None
    snapshotter = Snapshotter(
        runtime, home, config.heartbeat.timezone, tree=tree, recent_errors=recent_errors, checks=checks_states,
        cron_due=lambda: [j["name"] for j in cron.states()
                          if j.get("next_due") is not None and j["next_due"] <= reactor.seconds()],
    )
    heartbeat = HeartbeatService(runtime, config.heartbeat, home, brain, store, notifier, snapshotter, push=push,
                                 claim=save_state)
    checks.on_change = lambda name: heartbeat.wake("check")  # a model may want to act on it
    engine.children.append(("heartbeat", heartbeat))
    engine.methods.update(heartbeat_methods(heartbeat))

    reporter = Reporter(reactor, store, notifier, home, config.heartbeat.timezone, summarize=brain_summarizer(brain))
    engine.children.append(("reports", reporter))
    cron = CronService(timers, store, config.cron, notifier, run_report=reporter.run,
                       run_heartbeat=heartbeat.run_instruction, timezone=config.heartbeat.timezone,
                       run_backup=_backup_job(config, home, reactor, runtime, store), save_state=save_state)
    engine.children.append(("cron", cron))
    engine.methods["cron.list"] = lambda conn, params: {"jobs": cron.states()}
    engine.methods["reports.get"] = _reports_get(reporter)
    engine.methods["reports.list"] = lambda conn, params: {"days": reporter.days()}
    engine.methods["alerts.list"] = alerts_method(reactor, store)

    if config.mail:
        from openclaw.proactive.mail import MailWatchService

        mail = MailWatchService(reactor, store, notifier, config.mail, environ=environ,
                                ask_model=_mail_judge(config, reactor, runtime, tree, environ))
        engine.children.append(("mail", mail))
    return engine


def _backup_job(config: Config, home: str, reactor: Any, runtime: Runtime, store: Any) -> Callable[[Any], Any]:
    """A cron ``backup`` run, on a thread (the online backup reads the whole file); Redis is exported first."""
    import orjson
    from twisted.internet.defer import maybeDeferred
    from twisted.internet.threads import deferToThreadPool

    from openclaw import backup
    from openclaw.store import sqlite_path

    on_redis = config.store.url.startswith("redis://")

    def run(job: Any) -> Any:
        source = backup.sources(home, "" if on_redis else sqlite_path(config.store, home), runtime.config_path,
                                with_secrets=False)
        d = maybeDeferred(store.store.export) if on_redis else maybeDeferred(lambda: None)
        d.addCallback(lambda entries: deferToThreadPool(
            reactor, reactor.getThreadPool(), backup.scheduled, source, job.to or os.path.join(home, "backups"),
            job.keep, reactor.seconds(), None if entries is None else orjson.dumps(entries)))
        return d

    return run


def _mail_judge(config: Config, reactor: Any, runtime: Runtime, tree: TreeStatus, environ: Mapping[str, str]) -> Any:
    """
    A model that may promote mail the rules skipped: a brain of its own
    without tools, since mail text is untrusted input.  None without a model.
    """
    if not config.brain.providers:
        return None
    from dataclasses import replace

    from openclaw.agent.factory import make_brain
    from openclaw.facts import RuntimeFacts
    from openclaw.proactive.importance import model_judge

    return model_judge(make_brain(replace(config.brain, tools=()), reactor, RuntimeFacts(runtime, tree), (), environ))


def _reports_get(reporter: Reporter) -> Callable[[Any, dict], Any]:
    def get(conn: Any, params: dict) -> dict:
        day = params.get("date")
        if params.get("today") is True:
            return reporter.today().addCallback(lambda done: {"date": done[0], "markdown": done[1]})
        if day is not None and not isinstance(day, str):
            raise FrameError(frames.INVALID_FIELD, "field 'date' must be YYYY-MM-DD")
        text = reporter.get(day)
        if text is None:
            raise FrameError(frames.INVALID_FIELD, f"no report for {day or 'any day yet'}")
        return {"date": day, "markdown": text}

    return get
